"""What the project's long-running processes share: the flag validators, the error that names a
flag, running until SIGTERM/SIGINT, the exit status, and a parent's way to end such a child. A
module of the project's own processes rather than of the client API (the root package does not
re-export it); public only because the processes live in other packages.

Used by ``python -m grpc_channel.sidecar`` (:mod:`grpc_channel.sidecar.serve`) and
``python -m grpc_channel.pubsub`` (:mod:`grpc_channel.pubsub.serve`), so that the same flag is
checked, and refused, the same way in both. Standard library only: the CLI builds these parsers
without the processes' extras installed.

The validators are argparse ``type=`` functions: a bad value raises
``argparse.ArgumentTypeError`` whose message says what was wrong and what is allowed; argparse
prefixes the flag's name (``argument --app-port: 70000 is out of range; allowed: 1-65535``).

Exit status of both processes: 0 after a signal-driven stop, :data:`EXIT_USAGE` (2) for bad flags
or a :class:`FlagError`, :data:`EXIT_FAILED` (1) for the failures each process names.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import pathlib
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

__all__ = [
    "EXIT_FAILED",
    "EXIT_USAGE",
    "Failure",
    "FlagError",
    "app_port",
    "existing_path",
    "grpc_target",
    "host",
    "listen_port",
    "log_to_stderr",
    "main",
    "positive_int",
    "run_process",
    "run_until_signal",
    "seconds",
    "terminate",
]

EXIT_USAGE: Final = 2
"""Bad flags (argparse's own status) or a :class:`FlagError`."""
EXIT_FAILED: Final = 1
"""The process could not run: a port, a broker, a missing extra."""

#: Exception types that end a process with :data:`EXIT_FAILED`, and what is logged before the
#: error; ``None``: print ``<prog>: error: <error>`` to stderr instead (for errors the operator
#: fixes, such as a missing extra, where a log line would read as a crash).
Failure = tuple[type[BaseException] | tuple[type[BaseException], ...], str | None]

_Config = TypeVar("_Config")

_STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
_LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class FlagError(Exception):
    """A flag's (or an environment variable's) value cannot be used: ``flag`` names it and the
    message (``"<flag>: <message>"``) says why. Each process raises its own subclass."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag


def _int_in(text: str, low: int, high: int | None, allowed: str) -> int:
    """``text`` as a base-10 int in ``low..high`` (``high`` None: no upper bound)."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an integer; allowed: {allowed}"
        ) from None
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: {allowed}")
    return value


def app_port(text: str) -> int:
    """A port to connect to: 1-65535."""
    return _int_in(text, 1, 65535, "1-65535")


def listen_port(text: str) -> int:
    """A port to listen on: 0-65535, 0 asking for an ephemeral port."""
    return _int_in(text, 0, 65535, "0-65535 (0: an ephemeral port)")


def positive_int(text: str) -> int:
    """A count or size: an int >= 1 (no upper bound)."""
    return _int_in(text, 1, None, "an integer >= 1")


def seconds(text: str) -> float:
    """A duration: a finite number of seconds > 0 (``nan``, ``inf``, 0 and negatives refused)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan  # refused below with the same message as any other unusable value
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not usable; allowed: a finite number of seconds > 0"
        )
    return value


def host(text: str) -> str:
    """A host name or address, as given: not empty, no white space anywhere."""
    if not text.strip() or any(ch.isspace() for ch in text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a host name or address")
    return text


def existing_path(text: str) -> pathlib.Path:
    """A file or directory that exists now (it is read later, when the process starts)."""
    path = pathlib.Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text!r}: no such file or directory")
    return path


def grpc_target(hostname: str, port: int) -> str:
    """``hostname:port`` as gRPC targets spell it: an IPv6 literal in brackets
    (``[::1]:50051``); a name, an IPv4 address or an address already in brackets as it is."""
    if ":" in hostname and not hostname.startswith("["):
        return f"[{hostname}]:{port}"
    return f"{hostname}:{port}"


def log_to_stderr(level: int) -> None:
    """Log records of ``level`` and above to stderr, one line each (stdout stays the process's
    own: the sidecar's ready line). Does nothing when logging is configured already."""
    logging.basicConfig(level=level, format=_LOG_FORMAT, stream=sys.stderr)


async def run_until_signal(serve: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Await ``serve(stop)``, setting ``stop`` on SIGTERM or SIGINT; the handlers are removed
    however ``serve`` ends. A second signal sets ``stop`` again, which changes nothing: the
    process is already stopping, within its own bounded drain."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        await serve(stop)
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def run_process(
    prog: str,
    serve: Callable[[asyncio.Event], Awaitable[None]],
    *,
    level: int,
    log: logging.Logger,
    failures: Sequence[Failure],
) -> int:
    """Log to stderr at ``level``, run ``serve`` until SIGTERM/SIGINT (:func:`run_until_signal`)
    and return the exit status: 0 when it returns; :data:`EXIT_USAGE` for a :class:`FlagError`
    (printed as ``<prog>: error: <flag>: <why>``); :data:`EXIT_FAILED` for the first of
    ``failures`` (in order) that the error is an instance of. Any other error propagates."""
    log_to_stderr(level)
    try:
        asyncio.run(run_until_signal(serve))
    except FlagError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        for types, what in failures:
            if isinstance(exc, types):
                if what is None:
                    print(f"{prog}: error: {exc}", file=sys.stderr)
                else:
                    log.error("%s: %s", what, exc)
                return EXIT_FAILED
        raise
    return 0


def main(parse: Callable[[], _Config], run: Callable[[_Config], int]) -> int:
    """``run(parse())``; when ``parse`` exits (argparse has printed the usage and the flag's
    problem), its exit status instead (:data:`EXIT_USAGE` when it gives no number)."""
    try:
        config = parse()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return run(config)


def terminate(process: subprocess.Popen[str], timeout: float) -> int:
    """End a child process as its own SIGTERM handling expects: SIGTERM (unless it has exited
    already), ``timeout`` seconds to exit, then SIGKILL; reaped either way. Returns its exit
    status (negative: the signal that ended it)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()
