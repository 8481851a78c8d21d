"""What every report names: versions of the pieces under test and the machine it ran on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

__all__ = ["environment"]


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _our_version() -> str:
    installed = _version("grpc-channel")
    if installed is not None:
        return installed
    try:
        import grpc_channel

        return str(getattr(grpc_channel, "__version__", "source checkout"))
    except ImportError:
        return "unknown"


def environment() -> dict[str, Any]:
    """Versions (python, grpcio, protobuf and its backend, OpenTelemetry SDK, ours) and the
    machine."""
    import grpc
    from google.protobuf import __version__ as protobuf_version
    from google.protobuf.internal import api_implementation

    try:
        usable_cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        usable_cpus = os.cpu_count() or 0
    return {
        "versions": {
            "python": platform.python_version(),
            "python_implementation": platform.python_implementation(),
            "grpcio": grpc.__version__,
            "protobuf": protobuf_version,
            "protobuf_backend": api_implementation.Type(),
            "opentelemetry_sdk": _version("opentelemetry-sdk"),
            "grpc_channel": _our_version(),
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "usable_cpus": usable_cpus,
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor() or None,
            "executable": sys.executable,
        },
    }
