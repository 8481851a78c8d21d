"""Shared helpers for the benchmark and demo-app tests: demo apps that are always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from grpc_channel.demo import DemoConfig, DemoProcess, DemoServer, start_demo


@contextmanager
def demo_process(config: DemoConfig | None = None) -> Iterator[DemoProcess]:
    """The demo app in a child process on 127.0.0.1:0, stopped on exit."""
    _port, handle = start_demo(config)
    try:
        yield handle
    finally:
        handle.stop()


@contextmanager
def demo_server(config: DemoConfig | None = None) -> Iterator[DemoServer]:
    """The demo app in this process on 127.0.0.1:0, stopped on exit."""
    server = DemoServer(config)
    server.start()
    try:
        yield server
    finally:
        server.stop()
