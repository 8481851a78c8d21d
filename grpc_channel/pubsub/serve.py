"""The pub/sub runtime as a process: ``python -m grpc_channel.pubsub``.

::

    python -m grpc_channel.pubsub --app-id ID --app-port N [--app-host 127.0.0.1]
        [--components DIR_OR_FILE] [--subscriptions DIR_OR_FILE]
        [--delivery-timeout S] [--concurrency N] [--drain-timeout S]

runs a :class:`~grpc_channel.pubsub.runtime.PubSubRuntime` against the app at
``--app-host:--app-port`` (plaintext gRPC) until SIGTERM or SIGINT, then stops it gracefully:
no more fetching, deliveries in flight get ``--drain-timeout`` seconds (default 30) to finish, and
whatever is not acked by then stays with the broker for redelivery. A second signal while draining
changes nothing (the drain is already bounded).

- ``--components``: a Dapr Component file or directory
  (:func:`~grpc_channel.pubsub.brokers.load_components`); each pub/sub component becomes a broker
  under its ``metadata.name``. Without it: one in-memory broker named ``pubsub`` (useful only to
  the runtime's own publishes, since nothing outside this process can reach it).
- ``--subscriptions``: declarative Subscription files, scoped to ``--app-id``; refused ones are
  logged and skipped, the others kept.
- ``--delivery-timeout`` (default 60 s) bounds each ``OnTopicEvent`` call; ``--concurrency``
  (default 16) is deliveries in flight per subscription.
- The app token comes from the ``APP_API_TOKEN`` environment variable (none when unset or
  empty); it is never logged.

Logs go to stderr. Once subscribed, the process logs one line containing :data:`READY_MESSAGE`
followed by the subscription count (``pubsub runtime ready: 2 subscriptions``), so a parent
process can wait for readiness by reading stderr.

Exit status: 0 after a signal-driven stop; 2 for bad flags or unusable files (the message names
the flag); 1 when the runtime cannot start (the app never answered its subscription listing, a
broker failed to connect).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import pathlib
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from grpc_channel import process as flags
from grpc_channel.defaults import OptionError
from grpc_channel.dial_options import DialOption, with_app_token, with_insecure
from grpc_channel.pubsub.brokers import (
    Broker,
    BrokerArgumentError,
    BrokerError,
    ComponentError,
    MemoryBroker,
    load_components,
)
from grpc_channel.pubsub.brokers.base import validate_group
from grpc_channel.pubsub.subscriptions import Subscription, load_subscriptions

__all__ = [
    "DEFAULT_APP_HOST",
    "DEFAULT_PUBSUB_NAME",
    "READY_MESSAGE",
    "ServeConfig",
    "ServeError",
    "main",
    "parse_args",
    "serve",
]

_log = logging.getLogger("grpc_channel.pubsub.serve")

PROG: Final = "python -m grpc_channel.pubsub"
READY_MESSAGE: Final = "pubsub runtime ready:"
"""Start of the one log line written once every subscription is in place."""
DEFAULT_PUBSUB_NAME: Final = "pubsub"
"""The in-memory broker's name when no ``--components`` is given."""
DEFAULT_APP_HOST: Final = "127.0.0.1"
APP_TOKEN_ENV: Final = "APP_API_TOKEN"


class ServeError(flags.FlagError):
    """A flag's value cannot be used; ``flag`` names it (or the environment variable); the
    message is ``"<flag>: <why>"``, never the token's value."""


@dataclass(frozen=True)
class ServeConfig:
    """What the command line asked for (see the module docstring for the defaults)."""

    app_id: str
    app_port: int
    app_host: str = DEFAULT_APP_HOST
    components: pathlib.Path | None = None
    subscriptions: pathlib.Path | None = None
    delivery_timeout: float = 60.0
    concurrency: int = 16
    drain_timeout: float = 30.0


# -- flags -----------------------------------------------------------------------------------------


def _non_blank(text: str) -> str:
    # Only for --app-id, whose value parse_args then checks as a broker consumer group.
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Deliver pub/sub messages from brokers to an app's OnTopicEvent, "
        "as a Dapr sidecar does, until SIGTERM/SIGINT.",
    )
    parser.add_argument("--app-id", required=True, type=_non_blank, help="the app's id (group)")
    parser.add_argument(
        "--app-port", required=True, type=flags.app_port, help="the app's gRPC port"
    )
    parser.add_argument("--app-host", default=DEFAULT_APP_HOST, type=flags.host)
    parser.add_argument(
        "--components",
        type=flags.existing_path,
        help=f"Dapr Component file or directory (default: one in-memory broker "
        f"{DEFAULT_PUBSUB_NAME!r})",
    )
    parser.add_argument(
        "--subscriptions",
        type=flags.existing_path,
        help="declarative Subscription file or directory",
    )
    parser.add_argument(
        "--delivery-timeout", type=flags.seconds, default=60.0, help="seconds per OnTopicEvent call"
    )
    parser.add_argument(
        "--concurrency", type=flags.positive_int, default=16, help="deliveries in flight per topic"
    )
    parser.add_argument(
        "--drain-timeout",
        type=flags.seconds,
        default=30.0,
        help="seconds to finish deliveries on stop",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None, prog: str = PROG) -> ServeConfig:
    """The configuration of a command line; bad flags print usage naming the flag and raise
    ``SystemExit(2)`` (argparse's convention)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        validate_group("runtime", args.app_id)
    except BrokerArgumentError:
        parser.error(
            f"argument --app-id: {args.app_id!r} is not allowed; "
            "allowed are 1-100 characters of A-Z a-z 0-9 _ -"
        )
    return ServeConfig(
        app_id=args.app_id,
        app_port=args.app_port,
        app_host=args.app_host,
        components=args.components,
        subscriptions=args.subscriptions,
        delivery_timeout=args.delivery_timeout,
        concurrency=args.concurrency,
        drain_timeout=args.drain_timeout,
    )


# -- what the flags name ---------------------------------------------------------------------------


def load_brokers(config: ServeConfig) -> dict[str, Broker]:
    """``pubsub name -> broker`` (not yet connected: brokers connect on first use)."""
    if config.components is None:
        return {DEFAULT_PUBSUB_NAME: MemoryBroker()}
    try:
        components = load_components(config.components)
    except ComponentError as exc:
        raise ServeError("--components", str(exc)) from None
    if not components:
        raise ServeError(
            "--components", f"{config.components} holds no pub/sub component (pubsub.* type)"
        )
    return {name: component.create() for name, component in components.items()}


def load_declarative(config: ServeConfig) -> list[Subscription]:
    """The declarative subscriptions for this app; refused ones are logged and left out."""
    if config.subscriptions is None:
        return []
    try:
        result = load_subscriptions(config.subscriptions, app_id=config.app_id)
    except OSError as exc:
        raise ServeError("--subscriptions", str(exc)) from None
    for name, error in result.refused:
        _log.error("declarative subscription %s refused: %s", name, error)
    return list(result.accepted)


def app_dial_options(environ: Mapping[str, str] | None = None) -> tuple[DialOption, ...]:
    """Plaintext, plus the app token from ``APP_API_TOKEN`` when it is set."""
    token = (os.environ if environ is None else environ).get(APP_TOKEN_ENV) or None
    if token is None:
        return (with_insecure(),)
    try:
        return (with_insecure(), with_app_token(token))
    except OptionError:
        # The option's own message never shows the token; neither does this one.
        raise ServeError(APP_TOKEN_ENV, "the token must be printable ASCII") from None


# -- running ---------------------------------------------------------------------------------------


async def serve(config: ServeConfig, stop: asyncio.Event) -> None:
    """Run the runtime until ``stop`` is set, then stop it (drain) and close the brokers and the
    channel. Raises :class:`ServeError` for unusable files, and the runtime's errors (e.g.
    :class:`~grpc_channel.pubsub.runtime.SubscriptionFetchError`) when it cannot start."""
    from grpc_channel.aio import dial
    from grpc_channel.pubsub.runtime import PubSubRuntime

    options = app_dial_options()
    declarative = load_declarative(config)
    brokers = load_brokers(config)
    try:
        async with dial(flags.grpc_target(config.app_host, config.app_port), *options) as channel:
            runtime = PubSubRuntime(
                channel,
                brokers,
                app_id=config.app_id,
                declarative=declarative,
                delivery_timeout=config.delivery_timeout,
                concurrency=config.concurrency,
            )
            try:
                if await _start_unless_stopped(runtime.start(), stop):
                    count = len(runtime.subscriptions)
                    _log.info(
                        "%s %d subscription%s (app %r, brokers %s)",
                        READY_MESSAGE,
                        count,
                        "" if count == 1 else "s",
                        config.app_id,
                        ", ".join(sorted(brokers)),
                    )
                    await stop.wait()
                    _log.info("stopping: draining deliveries in flight")
            finally:
                await runtime.stop(config.drain_timeout)
    finally:
        for broker in brokers.values():
            try:
                await broker.close()
            except Exception:  # one broker failing to close must not keep the others open
                _log.exception("closing broker %r failed", broker.kind)


async def _start_unless_stopped(starting: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Await ``starting`` (the runtime's start) unless ``stop`` comes first: True when started.
    A signal during start (the app may take a while to come up) must not be ignored."""
    start_task = asyncio.create_task(starting)
    stop_task = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({start_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_task.cancel()
    if start_task.done():
        start_task.result()  # raises the start's error
        return True
    start_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await start_task
    return False


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Parse ``argv``, run until SIGTERM/SIGINT, return the exit status (module docstring)."""
    return flags.main(functools.partial(parse_args, argv, prog), functools.partial(_run, prog))


def _run(prog: str, config: ServeConfig) -> int:
    # Imported here, as serve() imports the runtime: building the parser does not load it.
    from grpc_channel.pubsub.runtime import PubSubRuntimeError

    return flags.run_process(
        prog,
        functools.partial(serve, config),
        level=logging.INFO,
        log=_log,
        failures=[
            ((BrokerError, OSError), "the pub/sub runtime failed"),
            (PubSubRuntimeError, "the pub/sub runtime could not start"),
        ],
    )
