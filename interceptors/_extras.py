"""Optional dependencies: a clear error naming the extra to install when one is missing.

``opentelemetry-api`` is this package's only hard telemetry dependency. The OpenTelemetry SDK
(lean spans, ``TracingSpec.sampler()``, ``TracingSpec(resource=...)``) comes with the ``otel``
extra, the Prometheus exporter (the sidecar's ``/metrics``) with the ``sidecar`` extra; both are
imported only where a feature needs them, so ``import grpc_channel`` stays light.
"""

from __future__ import annotations

__all__ = ["MissingExtraError", "missing_extra"]


class MissingExtraError(ImportError):
    """A feature needs an optional dependency that is not installed; the message names the
    feature, the missing distribution and the ``pip install 'grpc-channel[extra]'`` that brings
    it. An ``ImportError``, so code that already guards optional imports keeps working."""


def missing_extra(feature: str, distribution: str, extra: str) -> MissingExtraError:
    """The error to raise (``from`` the original ``ImportError``) when ``feature`` cannot import
    ``distribution``, which the ``extra`` extra of grpc-channel installs."""
    return MissingExtraError(
        f"{feature} needs {distribution}, which is not installed; install it with "
        f"pip install 'grpc-channel[{extra}]'"
    )
