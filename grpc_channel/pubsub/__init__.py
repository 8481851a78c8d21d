"""The pure core of Dapr-style pub/sub: no I/O here, brokers and servers build on it.

- :mod:`.wire`: the sidecar's ``PublishEvent`` method path and message types.
- :mod:`.cloudevents`: CloudEvents 1.0 envelopes, built on publish and parsed on delivery.
- :mod:`.routing`: CEL routing rules compiled once per subscription (:class:`Router`).
- :mod:`.subscriptions`: the :class:`Subscription` value type, its wire form, declarative files.
- :mod:`.retry`: the per-subscription delivery :class:`RetryPolicy`.
- :mod:`.runtime`: :class:`PubSubRuntime`, which fetches the app's subscriptions, subscribes on the
  brokers (:mod:`.brokers`), delivers each event to the app's ``OnTopicEvent``, and publishes.
"""

from __future__ import annotations

from grpc_channel.pubsub.cloudevents import (
    CLOUDEVENTS_CONTENT_TYPE,
    DAPR_EVENT_TYPE,
    RAW_PAYLOAD_METADATA_KEY,
    SPEC_VERSION,
    CloudEvent,
    CloudEventError,
    envelope_for_publish,
    is_json_content_type,
    is_raw_payload,
    is_text_content_type,
    new_cloud_event,
    parse_cloud_event,
)
from grpc_channel.pubsub.retry import (
    RETRY_BASE_DELAY_KEY,
    RETRY_JITTER_KEY,
    RETRY_MAX_ATTEMPTS_KEY,
    RETRY_MAX_DELAY_KEY,
    RETRY_METADATA_KEYS,
    RETRY_MULTIPLIER_KEY,
    RetryPolicy,
    RetryPolicyError,
)
from grpc_channel.pubsub.routing import (
    EVENT_VARIABLE,
    RouteDecision,
    RouteError,
    Router,
    Rule,
    RuleFailure,
)
from grpc_channel.pubsub.runtime import (
    IMPLICIT_ROUTE,
    PubSubRuntime,
    PubSubRuntimeError,
    RuntimeStats,
    RuntimeStoppedError,
    SubscriptionFetchError,
    UnknownPubSubError,
)
from grpc_channel.pubsub.subscriptions import (
    API_VERSION_V1ALPHA1,
    API_VERSION_V2ALPHA1,
    SUBSCRIPTION_FILE_SUFFIXES,
    BulkSubscribe,
    LoadResult,
    Routes,
    Subscription,
    SubscriptionError,
    SubscriptionSource,
    load_subscriptions,
    merge_subscriptions,
    parse_subscription_documents,
    validate_subscriptions,
)
from grpc_channel.pubsub.wire import (
    DAPR_SERVICE,
    PUBLISH_EVENT,
    PUBLISH_EVENT_REQUEST,
    PUBLISH_EVENT_RESPONSE,
)

__all__ = [
    "API_VERSION_V1ALPHA1",
    "API_VERSION_V2ALPHA1",
    "CLOUDEVENTS_CONTENT_TYPE",
    "DAPR_EVENT_TYPE",
    "DAPR_SERVICE",
    "EVENT_VARIABLE",
    "IMPLICIT_ROUTE",
    "PUBLISH_EVENT",
    "PUBLISH_EVENT_REQUEST",
    "PUBLISH_EVENT_RESPONSE",
    "RAW_PAYLOAD_METADATA_KEY",
    "RETRY_BASE_DELAY_KEY",
    "RETRY_JITTER_KEY",
    "RETRY_MAX_ATTEMPTS_KEY",
    "RETRY_MAX_DELAY_KEY",
    "RETRY_METADATA_KEYS",
    "RETRY_MULTIPLIER_KEY",
    "SPEC_VERSION",
    "SUBSCRIPTION_FILE_SUFFIXES",
    "BulkSubscribe",
    "CloudEvent",
    "CloudEventError",
    "LoadResult",
    "PubSubRuntime",
    "PubSubRuntimeError",
    "RetryPolicy",
    "RetryPolicyError",
    "RouteDecision",
    "RouteError",
    "Router",
    "Routes",
    "Rule",
    "RuleFailure",
    "RuntimeStats",
    "RuntimeStoppedError",
    "Subscription",
    "SubscriptionError",
    "SubscriptionFetchError",
    "SubscriptionSource",
    "UnknownPubSubError",
    "envelope_for_publish",
    "is_json_content_type",
    "is_raw_payload",
    "is_text_content_type",
    "load_subscriptions",
    "merge_subscriptions",
    "new_cloud_event",
    "parse_cloud_event",
    "parse_subscription_documents",
    "validate_subscriptions",
]
