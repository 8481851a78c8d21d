"""Set-up and everyday commands for grpc-channel; needs only Python 3.11+ and pip.

    python3 tasks.py bench   # the main job: demo app on loopback, latency comparison, HTML report
    python3 tasks.py test    # the whole test suite
    python3 tasks.py lint    # ruff, and mypy --strict over grpc_channel (and its subpackages)

Each command first makes sure ``.venv`` exists and holds the project installed in editable mode with
its ``dev`` extra; it reinstalls only when ``pyproject.toml`` changed since the last install. Extra
arguments after the command are passed on (to ``grpc-channel bench`` or to pytest).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".grpc-channel-installed"
_EDITABLE_MODE = ("--config-settings", "editable_mode=compat")


def _run(*args: str | Path) -> int:
    print("+ " + " ".join(str(a) for a in args), flush=True)
    return subprocess.call([str(a) for a in args], cwd=ROOT)


def ensure_venv() -> None:
    """Create .venv and install the project with its dev extra, unless already up to date."""
    steps = (
        (PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip"),
        # compat: a plain path entry rather than an import hook, so mypy and pyright see the
        # package (and grpc_channel.interceptors / .bench, symlinks into the top-level folders).
        (PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[dev]", *_EDITABLE_MODE),
    )
    # Reinstall when pyproject.toml or the way we install changes.
    recipe = (ROOT / "pyproject.toml").read_bytes() + " ".join(_EDITABLE_MODE).encode()
    wanted = hashlib.sha256(recipe).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted and PYTHON.exists():
        return
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    for step in steps:
        if _run(*step) != 0:
            raise SystemExit("installing the project into .venv failed; see pip's messages above")
    STAMP.write_text(wanted)


def bench(args: list[str]) -> int:
    return _run(BIN / "grpc-channel", "bench", *args)


# Two pytest-xdist workers, each taking whole test files (module fixtures such as the sidecar
# processes start once per file): the suite waits on sockets and child processes far more than it
# computes, so two workers halve its time even on two cores. Any -n/--numprocesses or
# -p no:xdist given after the command wins.
_PARALLEL = ("-n", "2", "--dist", "loadfile")


def test(args: list[str]) -> int:
    chosen = any(a in ("-n", "--numprocesses", "no:xdist") or a.startswith("-n") for a in args)
    return _run(PYTHON, "-m", "pytest", *(() if chosen else _PARALLEL), *args)


def lint(_args: list[str]) -> int:
    packages = ("grpc_channel", "interceptors", "benchmarks", "tests", "scripts", "tasks.py")
    checks = (
        (BIN / "ruff", "check", *packages),
        (BIN / "ruff", "format", "--check", *packages),
        # grpc_channel covers interceptors/ and benchmarks/ through its symlinks to them.
        (BIN / "mypy", "--strict", "grpc_channel"),
    )
    failed = [check for check in checks if _run(*check) != 0]
    return 1 if failed else 0


COMMANDS = {"bench": bench, "test": test, "lint": lint}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    ensure_venv()
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
