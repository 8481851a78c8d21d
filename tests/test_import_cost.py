"""What importing the package loads: never the OpenTelemetry SDK, and the SDK features still work
when it is installed, or fail with an error naming the extra when it is not.

Each check runs in a fresh interpreter (``sys.modules`` of the test process already holds
everything). No timings here: ``benchmarks/import_time.py`` measures import time.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter; its stdout, or fail with its stderr."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# Makes every ``opentelemetry.sdk``, ``opentelemetry.exporter`` and ``prometheus_client`` import
# fail, as on an install without the ``otel`` and ``sidecar`` extras.
_WITHOUT_EXTRAS = """
import sys
from importlib.abc import MetaPathFinder

class _Missing(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter", "prometheus_client")):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, _Missing())
"""


def test_importing_the_public_api_loads_no_opentelemetry_sdk() -> None:
    out = _python(
        """
        import sys

        def sdk():
            return sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk"))

        import grpc_channel
        print("root", sdk())
        from grpc_channel import *  # every public name of the root
        from grpc_channel.interceptors import *
        from grpc_channel.interceptors import Tracing, TracingSpec
        import grpc_channel.aio
        Tracing(TracingSpec())  # tracing with the API's providers needs no SDK either
        print("all", sdk())
        """
    )
    assert out.splitlines() == ["root []", "all []"]


def test_tracing_features_work_with_the_sdk_installed() -> None:
    """Lean spans and the spec's sampler import the SDK when used, over a real call."""
    out = _python(
        """
        import grpc
        from concurrent import futures
        from grpc_channel.interceptors import Tracing, TracingSpec, compose
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        def echo(request, context):
            return request

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        handler = grpc.method_handlers_generic_handler(
            "t.S", {"M": grpc.unary_unary_rpc_method_handler(echo)}
        )
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        exporter = InMemorySpanExporter()
        processor = SimpleSpanProcessor(exporter)
        spec = TracingSpec(span_processor=processor)
        target = f"127.0.0.1:{port}"
        raw = grpc.insecure_channel(target)
        try:
            channel = compose(Tracing(spec, target=target)).wrap(raw)
            assert channel.unary_unary("/t.S/M")(b"hi") == b"hi"
        finally:
            raw.close()
            server.stop(None).wait()
        [span] = exporter.get_finished_spans()
        print(span.name, span.attributes["server.address"], span.attributes["server.port"] == port)
        print(type(spec.sampler()).__name__)
        processor.shutdown()
        """
    )
    assert out.splitlines() == ["t.S/M 127.0.0.1 True", "ParentBased"]


# Each use of a feature that needs an extra, and the extra its error must name.
_NEEDS_EXTRA = (
    ("TracingSpec(span_processor=object())", "otel"),
    ("TracingSpec().sampler()", "otel"),
    ("SidecarHttp(healthy=lambda: True)", "sidecar"),
    ("prometheus_meter_provider()", "sidecar"),
)


def test_sdk_features_without_the_extras_name_them() -> None:
    """One interpreter for all the cases: each fresh one costs seconds on a busy CI machine."""
    out = _python(
        _WITHOUT_EXTRAS
        + f"""
from grpc_channel.interceptors import MissingExtraError, Tracing, TracingSpec
from grpc_channel.sidecar.http import SidecarHttp, prometheus_meter_provider

# What needs no extra still works: a policy on the API's providers, health without metrics.
Tracing(TracingSpec())
SidecarHttp(healthy=lambda: True, metrics=False)
for use in {[use for use, _ in _NEEDS_EXTRA]!r}:
    try:
        eval(use)
    except MissingExtraError as exc:
        assert isinstance(exc, ImportError)
        print(exc)
    else:
        print("no error from", use)
"""
    )
    lines = out.splitlines()
    assert len(lines) == len(_NEEDS_EXTRA), out
    for line, (use, extra) in zip(lines, _NEEDS_EXTRA, strict=True):
        assert line.endswith(f"pip install 'grpc-channel[{extra}]'"), (use, line)
