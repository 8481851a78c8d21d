"""The installed package: one top-level name, importable beside a user's own ``interceptors/``.

The repository keeps ``interceptors/`` and ``benchmarks/`` at its top, but the wheel installs them
as ``grpc_channel.interceptors`` and ``grpc_channel.bench`` (symlinks inside ``grpc_channel/``), so
that a project with folders of those names does not shadow ours. These tests build the wheel,
install it into a fresh virtual environment and import every module from inside such a project.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
_PIP = (sys.executable, "-m", "pip")
_NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")

# Imports every module of the installed package, then reports where the names came from.
_IMPORT_ALL = """
import importlib, json, pkgutil, sys
import interceptors, benchmarks          # the user's own packages
import grpc_channel
from grpc_channel import dial
from grpc_channel.interceptors import compose
from grpc_channel.bench import run
names = []
for info in pkgutil.walk_packages(grpc_channel.__path__, "grpc_channel."):
    if info.name.endswith(("__main__", "._worker")):
        continue  # entry points: they run on import
    importlib.import_module(info.name)
    names.append(info.name)
print(json.dumps({
    "grpc_channel": grpc_channel.__file__,
    "user_interceptors": interceptors.__file__,
    "user_benchmarks": benchmarks.__file__,
    "ours": [sys.modules[n].__file__ for n in ("grpc_channel.interceptors", "grpc_channel.bench")],
    "modules": names,
}))
"""


_built: dict[str, pathlib.Path] = {}


def build_wheel(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The project's wheel, built once per test process (other test modules reuse it)."""
    if "wheel" in _built:
        return _built["wheel"]
    # Built from a copy: setuptools reuses build/ in the source tree, which may hold stale files.
    source = tmp_path_factory.mktemp("source") / "grpc-channel"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            *_PIP,
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        cwd=out,
    )
    (built,) = out.glob("grpc_channel-*.whl")
    _built["wheel"] = built
    return built


def venv_with_wheel(wheel: pathlib.Path, env_dir: pathlib.Path, *requirements: str) -> pathlib.Path:
    """A fresh virtual environment with the wheel installed; returns its python.

    ``requirements`` (exact pins such as ``protobuf==5.26.1``) are installed into it from the
    package index, without their dependencies and as wheels only (pip's cache makes a repeat
    cheap). Everything else (grpcio, protobuf, ...) is borrowed from the running environment by
    a path entry that comes after the fresh environment's own packages, so a pinned requirement
    shadows the borrowed copy. A path in a .pth is added as it is, so our editable install's own
    .pth (which would put the repository on sys.path) is not processed there.
    """
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    install = [*_PIP, "--python", str(python), "install", "--quiet", "--no-deps"]
    # One pip run: its start-up is most of the cost. Only pinned requirements reach the index.
    install += ["--only-binary", ":all:", *requirements] if requirements else ["--no-index"]
    subprocess.run([*install, str(wheel)], check=True)
    fresh_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (pathlib.Path(fresh_site) / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def clean_environ() -> dict[str, str]:
    """This process's environment without what would point a fresh interpreter back here."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return build_wheel(tmp_path_factory)


def test_wheel_installs_one_top_level_package(wheel: pathlib.Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"grpc_channel"}
    for expected in (
        "grpc_channel/interceptors/__init__.py",
        "grpc_channel/interceptors/py.typed",
        "grpc_channel/bench/__init__.py",
        "grpc_channel/bench/_worker.py",
        "grpc_channel/py.typed",
    ):
        assert expected in names


def test_installed_wheel_imports_beside_a_users_own_packages(
    wheel: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    env_dir = tmp_path / "venv"
    python = venv_with_wheel(wheel, env_dir)

    project = tmp_path / "project"
    for own in ("interceptors", "benchmarks"):
        (project / own).mkdir(parents=True)
        (project / own / "__init__.py").write_text(f"WHO = 'the user {own}'\n")
    environ = clean_environ()
    done = subprocess.run(
        [str(python), "-c", _IMPORT_ALL],
        cwd=project,
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert pathlib.Path(seen["grpc_channel"]).is_relative_to(env_dir)
    assert pathlib.Path(seen["user_interceptors"]).is_relative_to(project)
    assert pathlib.Path(seen["user_benchmarks"]).is_relative_to(project)
    assert all(pathlib.Path(path).is_relative_to(env_dir) for path in seen["ours"])
    assert "grpc_channel.interceptors._concurrency" in seen["modules"]
    assert "grpc_channel.bench.runner" in seen["modules"]


def test_no_module_imports_the_top_level_names() -> None:
    """Importing everything of ours never loads a top-level ``interceptors`` or ``benchmarks``."""
    code = (
        "import importlib, pkgutil, sys, grpc_channel\n"
        "for info in pkgutil.walk_packages(grpc_channel.__path__, 'grpc_channel.'):\n"
        "    if not info.name.endswith(('__main__', '._worker')):\n"
        "        importlib.import_module(info.name)\n"
        "tops = ('interceptors', 'benchmarks')\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in tops))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT / "tests"
    )
    assert done.stdout.strip() == "[]"


def test_editable_install_is_visible_to_type_checkers(tmp_path: pathlib.Path) -> None:
    """The development install is a static path entry (``editable_mode=compat``), not an import
    hook, so mypy (and pyright) resolve ``grpc_channel.interceptors`` from a project elsewhere."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from grpc_channel import dial, with_insecure\n"
        "from grpc_channel.interceptors import ConcurrencyLimit, compose\n"
        "from grpc_channel.bench import LoadSpec\n"
        "chain = compose(ConcurrencyLimit(4))\n"
        "channel = dial('127.0.0.1:1', with_insecure())\n"
        "spec: LoadSpec | None = None\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(sample)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
