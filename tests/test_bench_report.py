"""The benchmark's HTML report, Prometheus and HdrHistogram exports: structure checked with a
parser on a real run against the demo app, and (when a chromium binary is installed) in a real
headless browser after its script ran."""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support_bench import demo_process

from grpc_channel.bench import charts
from grpc_channel.bench.environment import environment
from grpc_channel.bench.export import hdr_paths, to_hgrm
from grpc_channel.bench.histogram import Histogram
from grpc_channel.bench.report import to_html, variant_groups
from grpc_channel.bench.runner import ArmResult, LoadSpec, RunResult
from grpc_channel.bench.target import invoke_target
from grpc_channel.cli import main

VARIANTS = "grpc-sync,grpc-sync-again,chain,chain+tracing,grpc-aio,grpc-aio-again,chain-aio"
GROUPS = {"sync · bare grpcio", "sync · chain", "aio · bare grpcio", "aio · chain"}
SMALL = ["--rounds", "3", "--block", "30", "--warmup", "5", "--no-progress", "--quiet"]


# -- a small HTML tree (html.parser gives events; the checks want elements) -----------------


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: str = ""

    def iter(self, tag: str | None = None) -> Iterator[Node]:
        if tag is None or self.tag == tag:
            yield self
        for child in self.children:
            yield from child.iter(tag)

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def all_text(self) -> str:
        return self.text + "".join(child.all_text() for child in self.children)


_VOID = {"meta", "br", "img", "input", "link", "hr"}


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(Node("#text", {}, text=data))


def parse(page: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(page)
    builder.close()
    return builder.root


def series_colors(svg: Node) -> dict[str, str]:
    """Each series of a chart with its one colour (fails when a series uses two)."""
    colors: dict[str, str] = {}
    for group in svg.iter("g"):
        name = group.attrs.get("data-series")
        if name is None:
            continue
        used = {
            mark.attrs.get("stroke") if mark.tag == "polyline" else mark.attrs.get("fill")
            for mark in group.iter()
            if mark.tag in ("polyline", "circle")
        }
        assert len(used) == 1, (name, used)
        colors[name] = used.pop() or ""
    return colors


def check_page(page: str, labels: list[str]) -> Node:
    """The structure every multi-variant report has; returns the parsed tree."""
    root = parse(page)
    svgs = list(root.iter("svg"))
    assert svgs and "ratio" in svgs[0].classes(), "the ratio chart comes first"
    ratio_colors = series_colors(svgs[0])
    assert ratio_colors and len(set(ratio_colors.values())) == len(ratio_colors)
    figures = [f for f in root.iter("figure") if "group" in f.classes()]
    for figure in figures:
        keys = [b.attrs["data-series"] for b in figure.iter("button") if "key" in b.classes()]
        charts_in = list(figure.iter("svg"))
        assert {c.attrs["class"] for c in charts_in} == {"chart percentiles", "chart rounds"}
        for chart in charts_in:
            colors = series_colors(chart)
            assert list(colors) == keys  # the legend names exactly the chart's series
            assert len(set(colors.values())) == len(colors)  # never reused within a chart
            ticks = [t for t in chart.iter("text") if "tk" in t.classes()]
            assert len(ticks) <= 20  # at most ~10 per axis
    shown = {b.attrs["data-series"] for f in figures for b in f.iter("button")}
    assert shown >= set(labels)
    (details,) = [d for d in root.iter("details") if "env" in d.classes()]
    cells = [td.all_text() for td in details.iter("td")]
    assert "grpcio" in cells and "cpu count" in cells
    assert not any(re.search(r"[{}\[\]]|'\w+':", cell) for cell in cells), "no Python reprs"
    for node in root.iter():
        for attr in ("src", "href"):
            assert not node.attrs.get(attr, "").lower().startswith(("http:", "https:", "//"))
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page  # no fonts or images fetched by CSS
    return root


# -- a real run against the demo app -----------------------------------------------------


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    with demo_process() as app:
        argv = [
            "bench",
            *SMALL,
            "--target",
            app.address,
            "--variants",
            VARIANTS,
            "--html",
            str(out / "r.html"),
            "--json-out",
            str(out / "r.json"),
            "--prometheus-out",
            str(out / "r.prom"),
            "--hdr-out",
            str(out / "hgrm") + os.sep,
        ]
        assert main(argv) == 0
    return out


def test_html_opens_with_the_ratio_chart_then_one_figure_per_group(real_run: Path) -> None:
    report = json.loads((real_run / "r.json").read_text())
    labels = [arm["label"] for arm in report["arms"]]
    assert labels == VARIANTS.split(",")
    root = check_page((real_run / "r.html").read_text(encoding="utf-8"), labels)
    captions = [f.iter("figcaption").__next__().all_text() for f in root.iter("figure")]
    assert sorted(captions) == sorted(GROUPS)
    ratio = next(root.iter("svg"))
    rows = {g.attrs["data-series"]: g for g in ratio.iter("g") if "row" in g.classes()}
    assert set(rows) == set(labels) - {"grpc-sync", "grpc-aio"}  # baselines have no ratio
    # The A/A band: every row compared with grpc-sync shades grpc-sync-again's min-max.
    again = next(a for a in report["arms"] if a["label"] == "grpc-sync-again")
    spread = again["ratio_to_baseline_p50"]
    assert spread["min"] <= spread["median"] <= spread["max"]
    for label in ("grpc-sync-again", "chain", "chain+tracing", "chain-aio"):
        assert [r for r in rows[label].iter("rect") if "band" in r.classes()], label
    # Hovering a row shows its numbers.
    tip = rows["chain"].iter("title").__next__().all_text()
    chain = next(a for a in report["arms"] if a["label"] == "chain")
    assert f"median {chain['ratio_to_baseline_p50']['median']:.3f}" in tip
    assert "<script>" in (real_run / "r.html").read_text()  # the legend toggles


def test_prometheus_file_parses_and_matches_the_json(real_run: Path) -> None:
    report = json.loads((real_run / "r.json").read_text())
    text = (real_run / "r.prom").read_text(encoding="utf-8")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    summary = families["grpc_channel_bench_latency_seconds"]
    histogram = families["grpc_channel_bench_latency_histogram_seconds"]
    assert (summary.type, histogram.type) == ("summary", "histogram")
    assert families["grpc_channel_bench_calls"].type == "counter"
    for arm in report["arms"]:
        mine = [s for s in summary.samples if s.labels["variant"] == arm["label"]]
        count = next(s.value for s in mine if s.name.endswith("_count"))
        assert count == arm["ok"] == 90
        p50 = next(s.value for s in mine if s.labels.get("quantile") == "0.5")
        assert p50 * 1e3 == pytest.approx(arm["latency_ms"]["p50"], rel=1e-9)
        buckets = [
            s
            for s in histogram.samples
            if s.labels["variant"] == arm["label"] and s.name.endswith("_bucket")
        ]
        bounds = [float(s.labels["le"]) for s in buckets]
        counts = [s.value for s in buckets]
        assert bounds == sorted(bounds) and bounds[-1] == math.inf
        assert counts == sorted(counts) and counts[-1] == arm["ok"]
        calls = [
            s
            for s in families["grpc_channel_bench_calls"].samples
            if s.labels["variant"] == arm["label"]
        ]
        assert [(s.name, s.labels["code"], s.value) for s in calls] == [
            ("grpc_channel_bench_calls_total", "OK", 90)
        ]


def _read_hgrm(path: Path) -> tuple[list[list[float]], dict[str, float]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].split() == ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    assert lines[1] == ""
    rows = [[float(v) for v in line.split()] for line in lines[2:] if not line.startswith("#")]
    footer = dict(re.findall(r"(\w[\w ]*?)\s*=\s*([\d.]+)", " ".join(lines[-3:])))
    return rows, {key.strip(): float(value) for key, value in footer.items()}


def test_hgrm_files_hold_the_percentile_distribution_per_variant(real_run: Path) -> None:
    report = json.loads((real_run / "r.json").read_text())
    files = sorted((real_run / "hgrm").iterdir())
    assert [f.name for f in files] == sorted(
        re.sub(r"[^A-Za-z0-9._-]+", "_", a["label"]) + ".hgrm" for a in report["arms"]
    )
    for arm in report["arms"]:
        path = real_run / "hgrm" / (re.sub(r"[^A-Za-z0-9._-]+", "_", arm["label"]) + ".hgrm")
        rows, footer = _read_hgrm(path)
        values = [r[0] for r in rows]
        fractions = [r[1] for r in rows]
        counts = [r[2] for r in rows]
        assert values == sorted(values) and fractions == sorted(fractions)
        assert counts == sorted(counts) and counts[-1] == arm["ok"]
        assert fractions[0] == 0.0 and fractions[-1] == 1.0 and len(rows[-1]) == 3
        assert all(r[3] == pytest.approx(1 / (1 - r[1]), abs=0.006) for r in rows[:-1])
        assert fractions[1:6] == [0.1, 0.2, 0.3, 0.4, 0.5]  # 5 ticks per half distance
        assert footer["Total count"] == arm["ok"]
        assert footer["Max"] == pytest.approx(arm["latency_ms"]["max"], abs=0.0005)
        assert footer["Mean"] == pytest.approx(arm["latency_ms"]["mean"], abs=0.0005)
        assert footer["SubBuckets"] == 2048
        p50_row = next(r for r in rows if r[1] == 0.5)
        assert p50_row[0] == pytest.approx(arm["latency_ms"]["p50"], abs=0.0005)


def test_a_single_variant_run_says_there_is_nothing_to_compare(tmp_path: Path) -> None:
    with demo_process() as app:
        argv = ["bench", *SMALL, "--target", app.address, "--variants", "grpc-sync"]
        argv += ["--html", str(tmp_path / "one.html"), "--json-out", ""]
        assert main(argv) == 0
    root = parse((tmp_path / "one.html").read_text(encoding="utf-8"))
    assert not [svg for svg in root.iter("svg") if "ratio" in svg.classes()]
    (note,) = [p for p in root.iter("p") if p.attrs.get("id") == "no-ratio"]
    assert "nothing to compare" in note.all_text() and "grpc-sync" in note.all_text()
    (figure,) = [f for f in root.iter("figure") if "group" in f.classes()]
    assert [b.attrs["data-series"] for b in figure.iter("button")] == ["grpc-sync"]
    assert len(list(figure.iter("polyline"))) == 2  # its percentile curve and rounds line


# -- many variants, many rounds (the page's layout rules, no server needed) ---------------


def _synthetic(labels: list[tuple[str, str]], rounds: int) -> RunResult:
    """Arms with lognormal latencies and per-round p50s; ``labels`` are (label, baseline)."""
    rng = random.Random(5)
    arms = []
    for label, baseline in labels:
        histogram = Histogram()
        histogram.record_many(int(rng.lognormvariate(math.log(5e5), 0.3)) for _ in range(300))
        per_round = [int(5e5 * rng.uniform(0.9, 1.1)) for _ in range(rounds)]
        ratios = [] if label == baseline else [rng.uniform(0.95, 1.3) for _ in range(rounds)]
        kind = "aio" if "aio" in label else "sync"
        arm = ArmResult(
            label,
            label,
            "",
            kind,
            baseline,
            invoke_target("127.0.0.1:1"),
            histogram,
            None,
            {"OK": 300},
            {},
            10**9,
            10**8,
            list[int | None](per_round),
            ratios,
        )
        arms.append(arm)
    return RunResult(arms, [], LoadSpec(rounds=rounds), "cmd", environment(), "now", 1.0)


def test_28_variants_and_40_rounds_stay_readable() -> None:
    names = ["grpc-sync", "grpc-sync-again", "grpc-aio", "grpc-aio-again"]
    names += [f"chain-{i}" for i in range(12)] + [f"chain-aio-{i}" for i in range(12)]
    labels = [(n, "grpc-aio" if "aio" in n else "grpc-sync") for n in names]
    result = _synthetic(labels, rounds=40)
    page = to_html(result)
    root = check_page(page, names)
    ratio = next(root.iter("svg"))
    assert len([g for g in ratio.iter("g") if "row" in g.classes()]) == 26  # every entry kept
    for chart in root.iter("svg"):
        if "rounds" in chart.classes():
            x_ticks = [t.all_text() for t in chart.iter("text") if "tk" in t.classes()]
            numbers = [int(t) for t in x_ticks if t.isdigit()]
            assert numbers == [1, 5, 10, 15, 20, 25, 30, 35, 40]
    assert [name for name, _ in variant_groups(result.arms)] == [
        "sync · bare grpcio",
        "aio · bare grpcio",
        "sync · chain",
        "aio · chain",
    ]


def test_a_variant_without_ok_calls_and_a_round_without_any_are_left_out_not_drawn() -> None:
    result = _synthetic([("grpc-sync", "grpc-sync"), ("chain", "grpc-sync")], rounds=5)
    result.arms[1].round_p50_ns[2] = None  # a round where no call of chain ended OK
    dead = _synthetic([("intercept", "grpc-sync")], rounds=5).arms[0]
    dead.latency, dead.codes, dead.ratios = Histogram(), {"UNAVAILABLE": 40}, []
    dead.round_p50_ns = [None] * 5
    result.arms.append(dead)
    root = parse(to_html(result))
    figures = {f.iter("figcaption").__next__().all_text(): f for f in root.iter("figure")}
    assert "sync · intercept" not in figures  # nothing to draw for it
    (rounds,) = [c for c in figures["sync · chain"].iter("svg") if "rounds" in c.classes()]
    chain = next(g for g in rounds.iter("g") if g.attrs.get("data-series") == "chain")
    assert len(list(chain.iter("polyline"))) == 2  # broken at the empty round, not bridged
    assert len(list(chain.iter("circle"))) == 4
    tips = [t.all_text() for t in chain.iter("title")]
    assert any(re.fullmatch(r"chain round 5: p50 \d+\.\d{3} ms", t) for t in tips)
    ratio = next(root.iter("svg"))
    assert [g.attrs["data-series"] for g in ratio.iter("g")] == ["chain"]


def test_palette_is_distinct_and_colour_blind_safe_while_it_can_be() -> None:
    assert charts.palette(8) == list(charts.OKABE_ITO)
    for n in (1, 7, 9, 14, 28, 40):
        colors = charts.palette(n)
        assert len(colors) == n == len(set(colors))
        assert all(re.fullmatch(r"#[0-9A-F]{6}", c) for c in colors)
    assert charts.round_ticks(8) == list(range(1, 9))
    assert len(charts.round_ticks(1000)) <= 10


def test_hdr_file_names_from_a_prefix_or_a_folder(tmp_path: Path) -> None:
    result = _synthetic([("a+b", "a+b"), ("a_b", "a+b"), ("c", "a+b")], rounds=2)
    by_prefix = [p for _, p in hdr_paths(result, tmp_path / "run1-")]
    assert [p.name for p in by_prefix] == ["run1-a_b.hgrm", "run1-a_b-2.hgrm", "run1-c.hgrm"]
    in_folder = [p for _, p in hdr_paths(result, tmp_path)]
    assert [p.parent for p in in_folder] == [tmp_path] * 3
    with pytest.raises(ValueError, match="unit_ns"):
        to_hgrm(Histogram(), unit_ns=0)
    empty = to_hgrm(Histogram())
    assert "Total count    =            0" in empty and len(empty.splitlines()) == 5


# -- in a real browser (optional: skipped where no chromium is installed) -----------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary on PATH (optional check)")
def test_rendered_in_headless_chromium_the_legend_hides_a_series(real_run: Path) -> None:
    browser = _chromium()
    assert browser is not None
    url = (real_run / "r.html").resolve().as_uri() + "#hide=chain%2Btracing"
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=2000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = parse(done.stdout)
    svgs = list(dom.iter("svg"))
    assert "ratio" in svgs[0].classes() and svgs[0].iter("circle").__next__()
    figures = [f for f in dom.iter("figure") if "group" in f.classes()]
    assert len(figures) == len(GROUPS)
    (chain_figure,) = [
        f for f in figures if f.iter("figcaption").__next__().all_text() == "sync · chain"
    ]
    keys = {b.attrs["data-series"]: b for b in chain_figure.iter("button")}
    # The script ran: the key for chain+tracing was clicked, its lines hidden; chain's were not.
    assert keys["chain+tracing"].attrs["aria-pressed"] == "false"
    assert keys["chain"].attrs["aria-pressed"] == "true"
    hidden = [g for g in chain_figure.iter("g") if g.attrs.get("data-series") == "chain+tracing"]
    shown = [g for g in chain_figure.iter("g") if g.attrs.get("data-series") == "chain"]
    assert len(hidden) == 2 and all("off" in g.classes() for g in hidden)
    assert len(shown) == 2 and not any("off" in g.classes() for g in shown)
