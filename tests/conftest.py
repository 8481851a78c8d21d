"""Test-wide settings. Fixtures live in the ``support_*`` modules beside the tests; the scripted
server's are made visible to every test module here."""

from __future__ import annotations

import os

# grpc core logs connection events (GOAWAY on server stop) at INFO; they are noise in test output.
# Set before anything imports grpc (the harness below does).
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from support_channel import app, dapr_app, own_app
from support_harness import recorder, recording_server, served, served_target

__all__ = [
    "app",
    "dapr_app",
    "own_app",
    "recorder",
    "recording_server",
    "served",
    "served_target",
]

# Real Redis / NATS servers and per-test names for the pub/sub broker tests.
from support_brokers import nats_url, redis_url, unique_name

__all__ += ["nats_url", "redis_url", "unique_name"]
