"""Method path and message types of the sidecar's publish call.

An app publishes by calling the Dapr sidecar at ``/dapr.proto.runtime.v1.Dapr/PublishEvent`` with
a ``PublishEventRequest`` and receives ``google.protobuf.Empty``. Our proto package cannot declare a
service whose path lives in ``dapr.proto.runtime.v1``, so the path is a constant here.
"""

from __future__ import annotations

from typing import Final

from google.protobuf import empty_pb2

from grpc_channel.v1 import runtime_pb2

DAPR_SERVICE: Final = "dapr.proto.runtime.v1.Dapr"
"""Full name of the sidecar's runtime service."""

PUBLISH_EVENT: Final = f"/{DAPR_SERVICE}/PublishEvent"
"""Method path of the publish call."""

PUBLISH_EVENT_REQUEST: Final = runtime_pb2.PublishEventRequest
"""Request message of :data:`PUBLISH_EVENT`."""

PUBLISH_EVENT_RESPONSE: Final = empty_pb2.Empty
"""Response message of :data:`PUBLISH_EVENT` (carries nothing)."""

__all__ = ["DAPR_SERVICE", "PUBLISH_EVENT", "PUBLISH_EVENT_REQUEST", "PUBLISH_EVENT_RESPONSE"]
