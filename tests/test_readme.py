"""The README's examples run as written: each ```python block executes in a fresh interpreter, and
every ``grpc-channel bench`` command line in README.md and benchmarks/README.md runs too (shrunk to
a few calls, placeholders filled in), so a new example is tested as soon as it is written."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from support_bench import descriptor_set, reflecting_server

from grpc_channel.appcallback import ON_INVOKE
from grpc_channel.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
BENCH_DOCS = (README, ROOT / "benchmarks" / "README.md")


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int) -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKS[index]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"README example {index + 1} failed:\n{result.stderr}"
    assert result.stdout.strip(), f"README example {index + 1} printed nothing"


def bench_examples(path: Path) -> list[list[str]]:
    """The ``grpc-channel bench`` command lines in ``path``'s code (fenced or indented blocks),
    as argument lists after the program name; continuation lines joined, comments dropped."""
    examples: list[list[str]] = []
    fenced = False
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        command = re.match(r"\s*(\S*/)?grpc-channel bench\b", line)
        if command and (fenced or line.startswith("    ")):
            examples.append(shlex.split(line[command.end() - len("bench") :], comments=True))
    return examples


EXAMPLES = [(doc, words) for doc in BENCH_DOCS for words in bench_examples(doc)]

# What the examples' placeholders stand for here (the server is one with gRPC reflection).
PLACEHOLDERS = {"/pkg.S/M": ON_INVOKE, "{...}": '{"method": "echo", "contentType": "text/plain"}'}


def test_the_bench_docs_have_examples() -> None:
    assert len(bench_examples(README)) >= 4
    assert len(bench_examples(ROOT / "benchmarks" / "README.md")) >= 6
    assert ["bench", "--mode", "open", "--rate", "500", "--workers", "2"] in [
        words for _doc, words in EXAMPLES
    ]


@pytest.mark.parametrize(
    "words",
    [words for _doc, words in EXAMPLES],
    ids=[f"{doc.parent.name}/{doc.name}: {shlex.join(w)}" for doc, w in EXAMPLES],
)
def test_bench_example_runs(
    words: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each example as written, plus options that shrink it to a few calls and put the reports
    in a temporary folder. The accuracy check may fail its verdict on a busy machine (exit 1); it
    must still run and report both comparisons."""
    if words[:3] == ["bench", "--preset", "sidecar"]:
        # Its own multi-process harness (tests/test_sidecar_bench.py runs it, and the handover):
        # here only that it refuses the report options it would otherwise ignore.
        assert main([*words, "--html", str(tmp_path / "r.html")]) == 2
        assert "takes only --rounds and --json-out" in capsys.readouterr().err
        return
    pb = tmp_path / "set.pb"
    pb.write_bytes(descriptor_set())
    shrink = ["--rounds", "2", "--warmup", "2", "--no-progress"]
    totals = {"-n", "--total"} & set(words)
    if totals:
        # ghz-style totals: the run's -n shrinks to 20 (one variant: 20 calls).
        at = words.index(totals.pop()) + 1
        words = [*words[:at], "20", *words[at + 1 :]]
    elif not {"--duration", "-z", "--block"} & set(words):
        shrink += ["--calls", "20"]
    reports = ["--html", str(tmp_path / "r.html"), "--json-out", str(tmp_path / "r.json")]
    with reflecting_server() as address:
        filled = {**PLACEHOLDERS, "HOST:PORT": address, "set.pb": str(pb)}
        argv = [filled.get(word, word) for word in words]
        unknown = [w for w in argv if "..." in w or re.fullmatch(r"[A-Z][A-Z:_]+", w)]
        assert not unknown, f"fill in the placeholders {unknown} in PLACEHOLDERS"
        code = main([*argv, *shrink, *reports])
    captured = capsys.readouterr()
    if "--accuracy-check" in words:
        assert code in (0, 1), captured.err
        assert "accuracy vs idle-matched bare" in captured.out
    else:
        assert code == 0, f"{shlex.join(words)} exited {code}:\n{captured.err}"
    if "--list-variants" in words:
        assert "grpc-sync" in captured.out
        return
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["arms"]
    for arm in report["arms"]:
        assert arm["calls"] == 20 and arm["failed"] == 0, arm["label"]
