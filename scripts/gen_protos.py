"""Regenerate the committed protobuf modules under grpc_channel/v1/ from proto/.

Usage: ``python scripts/gen_protos.py`` writes the files; ``python scripts/gen_protos.py --check``
exits 1 and names the stale files when the committed modules differ from what protoc would write.
The test suite runs the check, so a .proto change without regeneration fails CI.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT_PACKAGE = ROOT / "grpc_channel" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi")


def _generate(out_dir: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) over every .proto file; return the files it wrote."""
    import grpc_tools
    from grpc_tools import protoc

    sources = sorted(PROTO_ROOT.rglob("*.proto"))
    if not sources:
        raise SystemExit(f"no .proto files under {PROTO_ROOT}")
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *(str(s.relative_to(PROTO_ROOT)) for s in sources),
    ]
    if protoc.main(args) != 0:
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
