"""Every library default in one record, and the rules option arguments are checked by.

:data:`DEFAULTS` holds grpc-go's values (which grpc core shares); the field defaults of
``DialSettings`` and ``CallInfo`` read it and nothing else does. :class:`OptionError` is what every
option constructor raises for an argument it cannot use, naming the option, the value and what is
allowed (a token is never repeated in an error). The checks shared by dial and call options
(seconds, milliseconds, sizes, wire text) live here too.

Folding
-------
Options fold in order over one set of defaults (:data:`DEFAULTS` and the field defaults of
:class:`DialSettings` / :class:`CallInfo`, nowhere else): later wins. For a call the order is
library defaults, then the dial-level default call options (:func:`with_default_call_options`), then
grpcio-style keyword arguments (``timeout=``, ``metadata=`` ...), then the per-call options.
Metadata accumulates instead: context metadata (``grpc_channel.metadata.outgoing_metadata``), then
every ``call_metadata(...)`` option and keyword in the same order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from grpc_channel.interceptors import MAX_TIMEOUT, check_timeout, short_repr

__all__ = [
    "DEFAULTS",
    "MAX_TIMEOUT",
    "Defaults",
    "OptionError",
]


_INT32_MAX: Final = 2**31 - 1
_INT32_MIN: Final = -(2**31)
_INT64_MAX: Final = 2**63 - 1


# ------------------------------------------------------------------------------------------
# Defaults: the one place.


@dataclass(frozen=True, slots=True)
class Defaults:
    """Every library default, in one record (grpc-go's values, which grpc core shares)."""

    #: Largest message a client accepts (grpc-go and grpcio: 4 MiB).
    max_recv_msg_size: int = 4 * 1024 * 1024
    #: Largest message a client sends: ``None`` is unlimited (grpc-go: MaxInt32; grpcio: -1).
    max_send_msg_size: int | None = None
    #: Reconnect backoff (grpc's connection-backoff.md): 1 s base, x1.6, ±20 % jitter, 120 s cap.
    base_delay: float = 1.0
    multiplier: float = 1.6
    jitter: float = 0.2
    max_delay: float = 120.0
    #: Shortest time given to one connection attempt.
    min_connect_timeout: float = 20.0
    #: Keepalive: off unless configured; when on, 20 s to wait for a ping ack; grpc-go's floor for
    #: the ping interval is 10 s.
    keepalive_timeout: float = 20.0
    min_keepalive_time: float = 10.0
    #: How long ``with_block()`` waits for the channel to become ready.
    block_timeout: float = 20.0
    #: Codec used when none is chosen.
    codec: str = "proto"
    #: Calls fail fast (do not wait for a ready connection) unless asked to.
    wait_for_ready: bool = False


DEFAULTS: Final = Defaults()


class OptionError(ValueError):
    """An option got an argument it cannot use; the message names the option, the value and what is
    allowed (tokens are described by type only)."""


def _refuse(option: str, value: object, allowed: str) -> OptionError:
    # short_repr: a huge value is cut (and a huge int, which repr() refuses, described).
    return OptionError(f"{option}: got {short_repr(value)}; {allowed}")


def check_seconds(option: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` as float seconds: a finite number ``> 0`` (``>= 0`` with ``allow_zero``) and at
    most :data:`MAX_TIMEOUT` (1e9 s), else :class:`OptionError` naming ``option``. The one
    timeout rule (``grpc_channel.interceptors.check_timeout``) with this module's error
    type."""
    return check_timeout(option, value, allow_zero=allow_zero, error=OptionError)


def _millis(option: str, value: object, what: str) -> float:
    """Seconds that grpc core takes as whole milliseconds in a C int (at most 2**31-1 ms, about
    24.8 days): larger values make grpcio raise OverflowError when the channel is created."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    # int(value * 1000) > 2**31-1, without int() (inf) or float() (a huge int) on the way.
    if number and value != math.inf and value * 1000 >= 2**31:  # type: ignore[operator]
        raise _refuse(
            option,
            value,
            f"{what} must be at most {_INT32_MAX / 1000} s (grpc core takes it as a C int of"
            f" milliseconds: 2**31-1 ms, about {_INT32_MAX / 86_400_000:.1f} days)",
        )
    return check_seconds(option, value)


def _size(option: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _INT32_MAX:
        raise _refuse(option, value, f"bytes must be an int from 0 to {_INT32_MAX}")
    return value


def _wire_text(option: str, value: object, what: str) -> str:
    """A str grpc core can take as a C string: UTF-8 encodable (a lone surrogate makes grpcio
    raise UnicodeEncodeError at dial) and without NUL (grpc core silently cuts the text there)."""
    if not isinstance(value, str):
        raise _refuse(option, value, f"{what} must be a str")
    if "\0" in value:
        raise _refuse(
            option, value, f"{what} must not contain NUL: grpc core would cut the text there"
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _refuse(
                option,
                value,
                f"{what} must be valid Unicode (UTF-8 encodable); the character at position"
                f" {exc.start} is a lone surrogate",
            ) from None
    return value


def _printable(option: str, value: object, what: str) -> str:
    if not isinstance(value, str) or not value or not (value.isascii() and value.isprintable()):
        raise _refuse(option, value, f"{what} must be a non-empty string of printable ASCII")
    return value
