"""grpc_channel.process and grpc_channel.lifecycle: the pieces the sidecar and pub/sub processes
share (flag validators, the flag error, exit statuses, ending a child) and ``with`` for things
that start and stop. The processes themselves are proven in test_sidecar_processes.py and
test_pubsub_crash.py; these pin the shared rules once."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable

import pytest

from grpc_channel import process
from grpc_channel.lifecycle import StartsOnEnter, StopsOnExit
from grpc_channel.pubsub.serve import ServeError
from grpc_channel.sidecar.serve import SidecarServeError


@pytest.mark.parametrize(
    ("check", "text", "message"),
    [
        (process.app_port, "0", "0 is out of range; allowed: 1-65535"),
        (process.app_port, "x", "'x' is not an integer; allowed: 1-65535"),
        (process.listen_port, "65536", "allowed: 0-65535 (0: an ephemeral port)"),
        (process.positive_int, "0", "0 is out of range; allowed: an integer >= 1"),
        (process.seconds, "nan", "'nan' is not usable; allowed: a finite number of seconds > 0"),
        (process.seconds, "soon", "'soon' is not usable"),
        (process.seconds, "-1", "'-1' is not usable"),
        (process.host, "a b", "'a b' is not a host name or address"),
        (process.host, " ", "is not a host name or address"),
        (process.existing_path, "/no/such/path", "'/no/such/path': no such file or directory"),
    ],
)
def test_a_bad_flag_value_says_what_is_allowed(check: object, text: str, message: str) -> None:
    assert callable(check)
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
        check(text)


def test_good_flag_values_pass() -> None:
    assert (process.app_port("65535"), process.listen_port("0"), process.positive_int("7")) == (
        65535,
        0,
        7,
    )
    assert process.seconds("0.5") == 0.5
    assert process.host("::1") == "::1"


def test_both_processes_errors_are_flag_errors_naming_the_flag() -> None:
    for error in (ServeError("--components", "empty"), SidecarServeError("--peers", "bad")):
        assert isinstance(error, process.FlagError)
    assert (str(SidecarServeError("--peers", "bad")), SidecarServeError("--peers", "x").flag) == (
        "--peers: bad",
        "--peers",
    )


@pytest.mark.parametrize(
    ("host", "target"),
    [("127.0.0.1", "127.0.0.1:5"), ("::1", "[::1]:5"), ("[::1]", "[::1]:5"), ("app", "app:5")],
)
def test_grpc_target_brackets_ipv6_literals(host: str, target: str) -> None:
    assert process.grpc_target(host, 5) == target


def test_main_returns_argparses_status_without_running() -> None:
    ran: list[object] = []

    def parse() -> object:
        raise SystemExit(2)

    def run(config: object) -> int:
        ran.append(config)
        return 0

    assert process.main(parse, run) == 2
    assert ran == []
    assert process.main(lambda: "config", lambda config: len(str(config))) == 6


class _Broken(Exception):
    pass


def _serving(error: BaseException | None) -> Callable[[asyncio.Event], Awaitable[None]]:
    async def serve(stop: asyncio.Event) -> None:
        if error is not None:
            raise error

    return serve


def test_run_process_maps_errors_to_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("test_process")
    failures: list[process.Failure] = [(OSError, "it failed"), (_Broken, None)]

    def status(error: BaseException | None) -> int:
        return process.run_process(
            "prog", _serving(error), level=logging.INFO, log=log, failures=failures
        )

    assert status(None) == 0
    assert status(SidecarServeError("--port", "taken")) == process.EXIT_USAGE
    assert "prog: error: --port: taken" in capsys.readouterr().err
    assert status(OSError("no port")) == process.EXIT_FAILED
    assert status(_Broken("no extra")) == process.EXIT_FAILED
    assert "prog: error: no extra" in capsys.readouterr().err
    with pytest.raises(KeyError):  # not a listed failure: not hidden behind an exit status
        status(KeyError("bug"))


def test_terminate_ends_a_child_and_reaps_it() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], text=True)
    assert process.terminate(child, 5.0) != 0
    assert child.returncode is not None
    assert process.terminate(child, 5.0) == child.returncode  # already gone: its status


class _Thing(StartsOnEnter):
    def __init__(self, fail: bool = False) -> None:
        self.events: list[str] = []
        self.fail = fail

    def start(self) -> int:
        self.events.append("start")
        if self.fail:
            raise RuntimeError("cannot start")
        return 1

    def stop(self) -> None:
        self.events.append("stop")


class _Handle(StopsOnExit):
    def __init__(self) -> None:
        self.stopped = 0

    def stop(self) -> int:
        self.stopped += 1
        return 0


def test_with_starts_and_stops_however_the_block_ends() -> None:
    thing = _Thing()
    with pytest.raises(ValueError), thing as entered:
        assert entered is thing and thing.events == ["start"]
        raise ValueError("the block's error propagates")
    assert thing.events == ["start", "stop"]
    failing = _Thing(fail=True)
    with pytest.raises(RuntimeError), failing:
        pass  # not reached
    assert failing.events == ["start"]  # never started: nothing to stop
    handle = _Handle()
    with handle:
        assert handle.stopped == 0
    assert handle.stopped == 1
