from google.protobuf import any_pb2 as _any_pb2
from grpc_channel.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class APIVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APIVERSION_UNSPECIFIED: _ClassVar[APIVersion]
    V1: _ClassVar[APIVersion]
APIVERSION_UNSPECIFIED: APIVersion
V1: APIVersion

class Status(_message.Message):
    __slots__ = ("code", "message", "details")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    details: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., details: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ...) -> None: ...

class ListStringValue(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class InternalInvokeRequest(_message.Message):
    __slots__ = ("ver", "metadata", "message")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ListStringValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ListStringValue, _Mapping]] = ...) -> None: ...
    VER_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ver: APIVersion
    metadata: _containers.MessageMap[str, ListStringValue]
    message: _common_pb2.InvokeRequest
    def __init__(self, ver: _Optional[_Union[APIVersion, str]] = ..., metadata: _Optional[_Mapping[str, ListStringValue]] = ..., message: _Optional[_Union[_common_pb2.InvokeRequest, _Mapping]] = ...) -> None: ...

class InternalInvokeResponse(_message.Message):
    __slots__ = ("status", "headers", "trailers", "message")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ListStringValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ListStringValue, _Mapping]] = ...) -> None: ...
    class TrailersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ListStringValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ListStringValue, _Mapping]] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    TRAILERS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    status: Status
    headers: _containers.MessageMap[str, ListStringValue]
    trailers: _containers.MessageMap[str, ListStringValue]
    message: _common_pb2.InvokeResponse
    def __init__(self, status: _Optional[_Union[Status, _Mapping]] = ..., headers: _Optional[_Mapping[str, ListStringValue]] = ..., trailers: _Optional[_Mapping[str, ListStringValue]] = ..., message: _Optional[_Union[_common_pb2.InvokeResponse, _Mapping]] = ...) -> None: ...
