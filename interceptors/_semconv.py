"""Which OpenTelemetry RPC semantic conventions to emit, and the duration buckets they share.

The RPC conventions were experimental up to semantic conventions v1.37 and have a stable form
since. Following the OpenTelemetry transition rule, the environment variable
``OTEL_SEMCONV_STABILITY_OPT_IN`` (a comma-separated list of categories) chooses:

- absent, or without an ``rpc`` entry: the experimental names this package has always emitted
  (:attr:`SemconvMode.OLD`, the default);
- ``rpc``: the stable names only (:attr:`SemconvMode.STABLE`);
- ``rpc/dup``: both (:attr:`SemconvMode.DUP`); it wins over ``rpc`` when both are listed.

Entries are matched after stripping blanks, in any case; other categories (``http``,
``database``, ...) and unknown entries are ignored, as the rule asks. ``Tracing`` and
``SidecarTelemetry`` read the variable once, when they are built: changing it later affects only
objects built later.

What each mode emits (client and server; ``{side}`` is ``client`` or ``server``):

============================ ================================ ===================================
item                         old (default)                    stable (``rpc``)
============================ ================================ ===================================
duration histogram           ``rpc.{side}.duration``, ``ms``  ``rpc.{side}.call.duration``, ``s``
system                       ``rpc.system="grpc"``            ``rpc.system.name="grpc"``
method                       ``rpc.service`` + ``rpc.method`` ``rpc.method="pkg.Service/Method"``
                             (``"pkg.Service"``, ``"Method"``)
status code                  ``rpc.grpc.status_code`` (int)   ``rpc.response.status_code``
                                                              (the code's name, ``"OK"``)
failed call on the histogram (nothing)                        ``error.type`` (the code's name)
============================ ================================ ===================================

``rpc/dup`` records both histograms, each with its own attribute set. Spans carry one set of
attributes, so under ``rpc/dup`` they carry the union; ``rpc.method`` exists in both conventions
with different values, and there the stable value (the full method) wins, the service still
being in ``rpc.service``. The in-flight counters ``rpc.{side}.active_calls`` (no convention has
them) keep their name in every mode and carry the spans' attribute set, without a status code.

Both histograms use :data:`DURATION_BUCKETS` (seconds; ``ms`` instruments get the same bounds
times 1000), given as the instrument's ``explicit_bucket_boundaries_advisory``: the SDK's default
boundaries start at 5 (ms or s), which would put every sub-millisecond call in one bucket. A
``View`` with its own aggregation, configured on the meter provider, still wins.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from typing import Final

__all__ = [
    "DURATION_BUCKETS",
    "DURATION_BUCKETS_MS",
    "SEMCONV_OPT_IN_ENV",
    "SemconvMode",
    "semconv_mode",
]

#: The transition variable of the OpenTelemetry semantic conventions.
SEMCONV_OPT_IN_ENV: Final = "OTEL_SEMCONV_STABILITY_OPT_IN"

#: Explicit histogram bucket boundaries for call durations, in seconds: 50 µs to 10 s, with
#: several buckets per decade below a millisecond so that loopback calls (tens to hundreds of
#: microseconds) are told apart. The single list every duration histogram here uses.
DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: :data:`DURATION_BUCKETS` in milliseconds, for the ``ms`` instruments of the old conventions
#: (rounded so that ``0.00005 * 1000`` is ``0.05``, not ``0.05000000000000001``).
DURATION_BUCKETS_MS: Final[tuple[float, ...]] = tuple(
    round(b * 1000.0, 9) for b in DURATION_BUCKETS
)


class SemconvMode(enum.Enum):
    """Which RPC conventions to emit; see the module docs for the names of each."""

    OLD = "old"
    STABLE = "rpc"
    DUP = "rpc/dup"

    @property
    def old(self) -> bool:
        """True when the experimental (pre-v1.38) names are emitted."""
        return self is not SemconvMode.STABLE

    @property
    def stable(self) -> bool:
        """True when the stable names are emitted."""
        return self is not SemconvMode.OLD


def semconv_mode(environ: Mapping[str, str] | None = None) -> SemconvMode:
    """The mode ``OTEL_SEMCONV_STABILITY_OPT_IN`` in ``environ`` (default: ``os.environ``) asks for.

    Never raises: a missing, empty or unrelated value gives :attr:`SemconvMode.OLD`.
    """
    raw = (os.environ if environ is None else environ).get(SEMCONV_OPT_IN_ENV, "")
    entries = {part.strip().lower() for part in raw.split(",")}
    if "rpc/dup" in entries:
        return SemconvMode.DUP
    if "rpc" in entries:
        return SemconvMode.STABLE
    return SemconvMode.OLD
