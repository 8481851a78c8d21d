"""Test-wide settings. Fixtures live in the ``support_*`` modules beside the tests."""

from __future__ import annotations

import os

# grpc core logs connection events (GOAWAY on server stop) at INFO; they are noise in test output.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
