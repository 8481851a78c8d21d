"""The wire contract: our messages are byte-compatible with Dapr's, and the gencode is fresh.

Dapr's own generated classes (from the ``dapr`` package) are the reference for the
``common/v1`` and ``runtime/v1`` messages. The ``internals/v1`` messages are not shipped by the
SDK, so their reference is built here from the field numbers of the wire contract, in a
descriptor pool of its own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dapr.proto.common.v1 import common_pb2 as dapr_common
from dapr.proto.runtime.v1 import appcallback_pb2 as dapr_appcallback
from dapr.proto.runtime.v1 import dapr_pb2 as dapr_runtime
from dapr.proto.runtime.v1 import pubsub_pb2 as dapr_pubsub
from google.protobuf import (
    any_pb2,
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    struct_pb2,
    text_format,
    unknown_fields,
)
from google.protobuf.descriptor import FieldDescriptor, FileDescriptor
from google.protobuf.message import Message

from grpc_channel import appcallback
from grpc_channel.pubsub import wire
from grpc_channel.v1 import appcallback_pb2, common_pb2, internals_pb2, runtime_pb2

ROOT = Path(__file__).resolve().parent.parent


def _any(type_url: str, value: bytes) -> any_pb2.Any:
    return any_pb2.Any(type_url=type_url, value=value)


def _full_messages() -> dict[str, Message]:
    """One instance of every message of ours, every field set (nested, maps, enums, Any, Struct)."""
    http = common_pb2.HTTPExtension(verb=common_pb2.HTTPExtension.PATCH, querystring="a=1&b=%20")
    request = common_pb2.InvokeRequest(
        method="orders/create",
        data=_any("type.googleapis.com/google.protobuf.StringValue", b"\n\x05hello"),
        content_type="application/json",
        http_extension=http,
    )
    response = common_pb2.InvokeResponse(data=_any("", b"\x00\x01raw"), content_type="text/plain")
    extensions = struct_pb2.Struct()
    extensions.update({"traceid": "abc", "n": 3.5, "flag": True, "nested": {"k": [1, "two", None]}})
    event = appcallback_pb2.TopicEventRequest(
        id="e-1",
        source="checkout",
        type="com.dapr.event.sent",
        spec_version="1.0",
        data_content_type="application/json",
        topic="orders",
        data=b'{"id": 7}',
        pubsub_name="pubsub",
        path="/orders",
        extensions=extensions,
    )
    rule = appcallback_pb2.TopicRule(match='event.type == "order"', path="/orders/typed")
    routes = appcallback_pb2.TopicRoutes(
        rules=[rule, appcallback_pb2.TopicRule(path="/x")], default="/d"
    )
    bulk = appcallback_pb2.BulkSubscribeConfig(
        enabled=True, max_messages_count=100, max_await_duration_ms=40
    )
    subscription = appcallback_pb2.TopicSubscription(
        pubsub_name="pubsub",
        topic="orders",
        metadata={"rawPayload": "true", "ttl": "10s"},
        routes=routes,
        dead_letter_topic="orders-dead",
        bulk_subscribe=bulk,
    )
    publish = runtime_pb2.PublishEventRequest(
        pubsub_name="pubsub",
        topic="orders",
        data=b'{"id": 12345678901234567890}',
        data_content_type="application/json",
        metadata={"rawPayload": "false", "ttlInSeconds": "30"},
    )
    values = internals_pb2.ListStringValue(values=["a", "b"])
    status = internals_pb2.Status(
        code=3, message="bad request", details=[_any("type.googleapis.com/x.Y", b"\x08\x01")]
    )
    return {
        "HTTPExtension": http,
        "InvokeRequest": request,
        "InvokeResponse": response,
        "TopicEventRequest": event,
        "TopicEventResponse": appcallback_pb2.TopicEventResponse(
            status=appcallback_pb2.TopicEventResponse.DROP
        ),
        "TopicRule": rule,
        "TopicRoutes": routes,
        "TopicSubscription": subscription,
        "BulkSubscribeConfig": bulk,
        "PublishEventRequest": publish,
        "ListTopicSubscriptionsResponse": appcallback_pb2.ListTopicSubscriptionsResponse(
            subscriptions=[subscription, appcallback_pb2.TopicSubscription(topic="t2")]
        ),
        "HealthCheckResponse": appcallback_pb2.HealthCheckResponse(),
        "Status": status,
        "ListStringValue": values,
        "InternalInvokeRequest": internals_pb2.InternalInvokeRequest(
            ver=internals_pb2.V1,
            metadata={"x-a": values, "k-bin": internals_pb2.ListStringValue(values=["AAE="])},
            message=request,
        ),
        "InternalInvokeResponse": internals_pb2.InternalInvokeResponse(
            status=status,
            headers={"h": values},
            trailers={"t": internals_pb2.ListStringValue(values=["1"])},
            message=response,
        ),
    }


def _reference_internals() -> dict[str, type[Message]]:
    """Dapr's internals/v1 messages, declared from the wire contract's field numbers alone."""
    pool = descriptor_pool.DescriptorPool()

    def add_with_dependencies(file_descriptor: FileDescriptor) -> None:
        for dependency in file_descriptor.dependencies:
            add_with_dependencies(dependency)
        file_proto = descriptor_pb2.FileDescriptorProto()
        file_descriptor.CopyToProto(file_proto)
        try:
            pool.FindFileByName(file_proto.name)
        except KeyError:
            pool.Add(file_proto)

    # The internals messages nest Dapr's own InvokeRequest/InvokeResponse.
    add_with_dependencies(dapr_common.DESCRIPTOR)

    f = descriptor_pb2.FileDescriptorProto(
        name="dapr/proto/internals/v1/reference.proto",
        package="dapr.proto.internals.v1",
        syntax="proto3",
        dependency=["google/protobuf/any.proto", dapr_common.DESCRIPTOR.name],
    )
    T = descriptor_pb2.FieldDescriptorProto
    opt, rep = T.LABEL_OPTIONAL, T.LABEL_REPEATED

    def field(
        name: str,
        number: int,
        kind: descriptor_pb2.FieldDescriptorProto.Type.ValueType,
        label: descriptor_pb2.FieldDescriptorProto.Label.ValueType = opt,
        type_name: str = "",
    ) -> descriptor_pb2.FieldDescriptorProto:
        proto = T(name=name, number=number, type=kind, label=label)
        if type_name:  # proto2 presence: an empty type_name would still count as set
            proto.type_name = type_name
        return proto

    version = f.enum_type.add(name="APIVersion")
    version.value.add(name="APIVERSION_UNSPECIFIED", number=0)
    version.value.add(name="V1", number=1)

    status = f.message_type.add(name="Status")
    status.field.extend(
        [
            field("code", 1, T.TYPE_INT32),
            field("message", 2, T.TYPE_STRING),
            field("details", 3, T.TYPE_MESSAGE, rep, ".google.protobuf.Any"),
        ]
    )
    f.message_type.add(name="ListStringValue").field.append(field("values", 1, T.TYPE_STRING, rep))
    lsv = ".dapr.proto.internals.v1.ListStringValue"

    def add_map_entry(message: descriptor_pb2.DescriptorProto, entry: str) -> str:
        nested = message.nested_type.add(name=entry)
        nested.options.map_entry = True
        nested.field.extend(
            [field("key", 1, T.TYPE_STRING), field("value", 2, T.TYPE_MESSAGE, opt, lsv)]
        )
        return f".dapr.proto.internals.v1.{message.name}.{entry}"

    req = f.message_type.add(name="InternalInvokeRequest")
    req.field.extend(
        [
            field("ver", 1, T.TYPE_ENUM, opt, ".dapr.proto.internals.v1.APIVersion"),
            field("metadata", 2, T.TYPE_MESSAGE, rep, add_map_entry(req, "MetadataEntry")),
            field("message", 3, T.TYPE_MESSAGE, opt, ".dapr.proto.common.v1.InvokeRequest"),
        ]
    )
    resp = f.message_type.add(name="InternalInvokeResponse")
    resp.field.extend(
        [
            field("status", 1, T.TYPE_MESSAGE, opt, ".dapr.proto.internals.v1.Status"),
            field("headers", 2, T.TYPE_MESSAGE, rep, add_map_entry(resp, "HeadersEntry")),
            field("trailers", 3, T.TYPE_MESSAGE, rep, add_map_entry(resp, "TrailersEntry")),
            field("message", 4, T.TYPE_MESSAGE, opt, ".dapr.proto.common.v1.InvokeResponse"),
        ]
    )
    pool.Add(f)
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"dapr.proto.internals.v1.{name}")
        )
        for name in ("Status", "ListStringValue", "InternalInvokeRequest", "InternalInvokeResponse")
    }


def _reference_classes() -> dict[str, type[Message]]:
    classes: dict[str, type[Message]] = {
        name: getattr(dapr_common, name)
        for name in ("HTTPExtension", "InvokeRequest", "InvokeResponse")
    }
    for name in (
        "TopicEventRequest",
        "TopicEventResponse",
        "TopicRule",
        "TopicRoutes",
        "TopicSubscription",
        "ListTopicSubscriptionsResponse",
        "HealthCheckResponse",
        "BulkSubscribeConfig",
    ):
        classes[name] = getattr(dapr_appcallback, name)
    # dapr 1.19 declares PublishEventRequest in runtime/v1/pubsub.proto; dapr_pb2 only uses it.
    classes["PublishEventRequest"] = dapr_pubsub.PublishEventRequest
    classes.update(_reference_internals())
    return classes


REFERENCE = _reference_classes()
MESSAGES = _full_messages()


def _dapr_api_messages() -> dict[str, Message]:
    """One instance of every message the sidecar's Dapr API adds, every field set."""
    request = MESSAGES["InvokeRequest"]
    assert isinstance(request, common_pb2.InvokeRequest)
    rule = runtime_pb2.PubsubSubscriptionRule(match='event.type == "big"', path="/orders/big")
    rules = runtime_pb2.PubsubSubscriptionRules(
        rules=[rule, runtime_pb2.PubsubSubscriptionRule(path="/d")]
    )
    subscription = runtime_pb2.PubsubSubscription(
        pubsub_name="pubsub",
        topic="orders",
        metadata={"rawPayload": "true"},
        rules=rules,
        dead_letter_topic="orders-dead",
        type=runtime_pb2.DECLARATIVE,
    )
    actors = runtime_pb2.ActiveActorsCount(type="cart", count=3)
    component = runtime_pb2.RegisteredComponents(
        name="pubsub", type="pubsub.redis", version="v1", capabilities=["TTL"]
    )
    endpoint = runtime_pb2.MetadataHTTPEndpoint(name="billing")
    connection = runtime_pb2.AppConnectionProperties(
        port=6000, protocol="grpc", channel_address="127.0.0.1", max_concurrency=8
    )
    return {
        "InvokeServiceRequest": runtime_pb2.InvokeServiceRequest(id="orders", message=request),
        "GetMetadataRequest": runtime_pb2.GetMetadataRequest(),
        "GetMetadataResponse": runtime_pb2.GetMetadataResponse(
            id="checkout",
            active_actors_count=[actors],
            registered_components=[component],
            extended_metadata={"k": "v"},
            subscriptions=[subscription],
            http_endpoints=[endpoint],
            app_connection_properties=connection,
            runtime_version="grpc-channel/0.1.0",
            enabled_features=["Feature"],
        ),
        "ActiveActorsCount": actors,
        "RegisteredComponents": component,
        "MetadataHTTPEndpoint": endpoint,
        "AppConnectionProperties": connection,
        "PubsubSubscription": subscription,
        "PubsubSubscriptionRules": rules,
        "PubsubSubscriptionRule": rule,
    }


def _dapr_api_reference() -> dict[str, type[Message]]:
    """Dapr's classes for them (dapr 1.19 spreads them over invoke_pb2 and metadata_pb2)."""
    from dapr.proto.runtime.v1 import invoke_pb2, metadata_pb2

    classes: dict[str, type[Message]] = {"InvokeServiceRequest": invoke_pb2.InvokeServiceRequest}
    for name in _dapr_api_messages():
        if name != "InvokeServiceRequest":
            classes[name] = getattr(metadata_pb2, name)
    return classes


# The Dapr API's messages join the generic checks above (coverage, numbers, round trips).
MESSAGES.update(_dapr_api_messages())
REFERENCE.update(_dapr_api_reference())


def test_every_message_of_ours_is_covered() -> None:
    ours = {
        name
        for module in (common_pb2, appcallback_pb2, internals_pb2, runtime_pb2)
        for name in module.DESCRIPTOR.message_types_by_name
    }
    assert ours == set(MESSAGES) == set(REFERENCE)


def _set_fields(message: Message) -> set[str]:
    return {fd.name for fd, _ in message.ListFields()}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_every_field_is_set_in_the_sample(name: str) -> None:
    message = MESSAGES[name]
    assert _set_fields(message) == {f.name for f in message.DESCRIPTOR.fields}


def _field_signature(descriptor: Any) -> dict[str, tuple[int, int, bool, str]]:
    def type_tail(f: FieldDescriptor) -> str:
        target = f.message_type or f.enum_type
        return target.name if target is not None else ""

    return {f.name: (f.number, f.type, f.is_repeated, type_tail(f)) for f in descriptor.fields}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_field_numbers_and_types_match_dapr(name: str) -> None:
    ours = _field_signature(MESSAGES[name].DESCRIPTOR)
    theirs = _field_signature(REFERENCE[name].DESCRIPTOR)
    # Dapr may grow fields we do not model yet; every field we declare must be theirs exactly.
    assert {k: theirs.get(k) for k in ours} == ours


@pytest.mark.parametrize(
    "name", ["TopicSubscription", "BulkSubscribeConfig", "PublishEventRequest"]
)
def test_pubsub_messages_model_every_dapr_field(name: str) -> None:
    assert _field_signature(MESSAGES[name].DESCRIPTOR) == (
        _field_signature(REFERENCE[name].DESCRIPTOR)
    )


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_round_trip_through_dapr_is_lossless(name: str) -> None:
    ours = MESSAGES[name]
    wire = ours.SerializeToString(deterministic=True)

    theirs = REFERENCE[name]()
    theirs.ParseFromString(wire)
    assert _set_fields(theirs) == _set_fields(ours)
    # Text format names every field and enum value: equal text is equal content, field by field.
    assert text_format.MessageToString(theirs, print_unknown_fields=True) == (
        text_format.MessageToString(ours, print_unknown_fields=True)
    )
    assert theirs.SerializeToString(deterministic=True) == wire

    back = type(ours)()
    back.ParseFromString(theirs.SerializeToString())
    assert back == ours


def test_bulk_subscribe_from_dapr_decodes_into_our_field() -> None:
    theirs = dapr_appcallback.TopicSubscription(pubsub_name="p", topic="t")
    theirs.bulk_subscribe.enabled = True
    theirs.bulk_subscribe.max_messages_count = 10
    theirs.bulk_subscribe.max_await_duration_ms = 250
    ours = appcallback_pb2.TopicSubscription.FromString(theirs.SerializeToString())
    assert ours.HasField("bulk_subscribe")
    assert (
        ours.bulk_subscribe.enabled,
        ours.bulk_subscribe.max_messages_count,
        ours.bulk_subscribe.max_await_duration_ms,
    ) == (True, 10, 250)
    assert len(unknown_fields.UnknownFieldSet(ours)) == 0
    again = dapr_appcallback.TopicSubscription.FromString(ours.SerializeToString())
    assert again == theirs


def test_publish_event_path_names_the_dapr_service_and_its_types() -> None:
    assert wire.DAPR_SERVICE == "dapr.proto.runtime.v1.Dapr"
    assert wire.PUBLISH_EVENT == "/dapr.proto.runtime.v1.Dapr/PublishEvent"
    method = dapr_runtime.DESCRIPTOR.services_by_name["Dapr"].methods_by_name["PublishEvent"]
    assert f"/{method.containing_service.full_name}/{method.name}" == wire.PUBLISH_EVENT
    assert method.input_type.name == wire.PUBLISH_EVENT_REQUEST.DESCRIPTOR.name
    assert method.output_type.full_name == wire.PUBLISH_EVENT_RESPONSE.DESCRIPTOR.full_name


def test_method_paths_name_dapr_services_and_known_types() -> None:
    assert appcallback.ON_INVOKE == "/dapr.proto.runtime.v1.AppCallback/OnInvoke"
    assert appcallback.LIST_TOPIC_SUBSCRIPTIONS == (
        "/dapr.proto.runtime.v1.AppCallback/ListTopicSubscriptions"
    )
    assert appcallback.ON_TOPIC_EVENT == "/dapr.proto.runtime.v1.AppCallback/OnTopicEvent"
    assert appcallback.HEALTH_CHECK == ("/dapr.proto.runtime.v1.AppCallbackHealthCheck/HealthCheck")
    service = dapr_appcallback.DESCRIPTOR.services_by_name["AppCallback"]
    for method in service.methods:
        path = f"/{service.full_name}/{method.name}"
        if path in appcallback.METHOD_TYPES:
            request, response = appcallback.method_types(path)
            assert request.DESCRIPTOR.name == method.input_type.name
            assert response.DESCRIPTOR.name == method.output_type.name
    with pytest.raises(KeyError, match="unknown AppCallback method path '/x/Y'; known paths"):
        appcallback.method_types("/x/Y")


def test_dapr_api_paths_name_the_dapr_service_and_its_types() -> None:
    from grpc_channel.sidecar import dapr_api

    service = dapr_runtime.DESCRIPTOR.services_by_name["Dapr"]
    served = {
        dapr_api.INVOKE_SERVICE: (runtime_pb2.InvokeServiceRequest, "InvokeResponse"),
        dapr_api.PUBLISH_EVENT: (runtime_pb2.PublishEventRequest, "Empty"),
        dapr_api.GET_METADATA: (runtime_pb2.GetMetadataRequest, "GetMetadataResponse"),
    }
    for path, (request, response) in served.items():
        method = service.methods_by_name[path.rsplit("/", 1)[1]]
        assert f"/{service.full_name}/{method.name}" == path
        assert method.input_type.name == request.DESCRIPTOR.name
        assert method.output_type.name == response
    # The subscription type's value names are Dapr's: text format prints them.
    from dapr.proto.runtime.v1 import metadata_pb2

    assert dict(runtime_pb2.PubsubSubscriptionType.items()) == dict(
        metadata_pb2.PubsubSubscriptionType.items()
    )


def test_ours_and_dapr_load_in_one_process() -> None:
    """Our proto package is our own, so both descriptor sets coexist (no duplicate symbols)."""
    assert common_pb2.InvokeRequest.DESCRIPTOR.full_name == "grpc_channel.v1.InvokeRequest"
    assert dapr_common.InvokeRequest.DESCRIPTOR.full_name == "dapr.proto.common.v1.InvokeRequest"


def test_generated_code_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
