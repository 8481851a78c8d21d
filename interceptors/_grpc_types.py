"""Base classes from grpcio that are generic in grpc-stubs but not at runtime (private)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import grpc.aio

if TYPE_CHECKING:
    AioStreamStreamMultiCallableBase: TypeAlias = grpc.aio.StreamStreamMultiCallable[Any, Any]
    AioUnaryStreamMultiCallableBase: TypeAlias = grpc.aio.UnaryStreamMultiCallable[Any, Any]
    AioStreamUnaryMultiCallableBase: TypeAlias = grpc.aio.StreamUnaryMultiCallable[Any, Any]
    AioUnaryUnaryMultiCallableBase: TypeAlias = grpc.aio.UnaryUnaryMultiCallable[Any, Any]
    Future: TypeAlias = grpc.Future[Any]
    ServerInterceptorBase: TypeAlias = grpc.ServerInterceptor[Any, Any]
    AioServerInterceptorBase: TypeAlias = grpc.aio.ServerInterceptor[Any, Any]
    UnaryUnaryClientInterceptor: TypeAlias = grpc.UnaryUnaryClientInterceptor[Any, Any]
    UnaryUnaryMultiCallableBase: TypeAlias = grpc.UnaryUnaryMultiCallable[Any, Any]
    AioUnaryUnaryClientInterceptor: TypeAlias = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
    AioUnaryUnaryCallBase: TypeAlias = grpc.aio.UnaryUnaryCall[Any, Any]
    UnaryStreamClientInterceptor: TypeAlias = grpc.UnaryStreamClientInterceptor[Any, Any]
    UnaryStreamMultiCallableBase: TypeAlias = grpc.UnaryStreamMultiCallable[Any, Any]
    AioUnaryStreamClientInterceptor: TypeAlias = grpc.aio.UnaryStreamClientInterceptor[Any, Any]
    AioUnaryStreamCallBase: TypeAlias = grpc.aio.UnaryStreamCall[Any, Any]
    StreamUnaryClientInterceptor: TypeAlias = grpc.StreamUnaryClientInterceptor[Any, Any]
    StreamUnaryMultiCallableBase: TypeAlias = grpc.StreamUnaryMultiCallable[Any, Any]
    AioStreamUnaryClientInterceptor: TypeAlias = grpc.aio.StreamUnaryClientInterceptor[Any, Any]
    AioStreamUnaryCallBase: TypeAlias = grpc.aio.StreamUnaryCall[Any, Any]
    StreamStreamClientInterceptor: TypeAlias = grpc.StreamStreamClientInterceptor[Any, Any]
    StreamStreamMultiCallableBase: TypeAlias = grpc.StreamStreamMultiCallable[Any, Any]
    AioStreamStreamClientInterceptor: TypeAlias = grpc.aio.StreamStreamClientInterceptor[Any, Any]
    AioStreamStreamCallBase: TypeAlias = grpc.aio.StreamStreamCall[Any, Any]
else:
    AioStreamStreamMultiCallableBase = grpc.aio.StreamStreamMultiCallable
    AioUnaryStreamMultiCallableBase = grpc.aio.UnaryStreamMultiCallable
    AioStreamUnaryMultiCallableBase = grpc.aio.StreamUnaryMultiCallable
    AioUnaryUnaryMultiCallableBase = grpc.aio.UnaryUnaryMultiCallable
    Future = grpc.Future
    ServerInterceptorBase = grpc.ServerInterceptor
    AioServerInterceptorBase = grpc.aio.ServerInterceptor
    UnaryUnaryClientInterceptor = grpc.UnaryUnaryClientInterceptor
    UnaryUnaryMultiCallableBase = grpc.UnaryUnaryMultiCallable
    AioUnaryUnaryClientInterceptor = grpc.aio.UnaryUnaryClientInterceptor
    AioUnaryUnaryCallBase = grpc.aio.UnaryUnaryCall
    UnaryStreamClientInterceptor = grpc.UnaryStreamClientInterceptor
    UnaryStreamMultiCallableBase = grpc.UnaryStreamMultiCallable
    AioUnaryStreamClientInterceptor = grpc.aio.UnaryStreamClientInterceptor
    AioUnaryStreamCallBase = grpc.aio.UnaryStreamCall
    StreamUnaryClientInterceptor = grpc.StreamUnaryClientInterceptor
    StreamUnaryMultiCallableBase = grpc.StreamUnaryMultiCallable
    AioStreamUnaryClientInterceptor = grpc.aio.StreamUnaryClientInterceptor
    AioStreamUnaryCallBase = grpc.aio.StreamUnaryCall
    StreamStreamClientInterceptor = grpc.StreamStreamClientInterceptor
    StreamStreamMultiCallableBase = grpc.StreamStreamMultiCallable
    AioStreamStreamClientInterceptor = grpc.aio.StreamStreamClientInterceptor
    AioStreamStreamCallBase = grpc.aio.StreamStreamCall

__all__ = [
    "AioServerInterceptorBase",
    "AioStreamStreamCallBase",
    "AioStreamStreamClientInterceptor",
    "AioStreamStreamMultiCallableBase",
    "AioStreamUnaryCallBase",
    "AioStreamUnaryClientInterceptor",
    "AioStreamUnaryMultiCallableBase",
    "AioUnaryStreamCallBase",
    "AioUnaryStreamClientInterceptor",
    "AioUnaryStreamMultiCallableBase",
    "AioUnaryUnaryCallBase",
    "AioUnaryUnaryClientInterceptor",
    "AioUnaryUnaryMultiCallableBase",
    "Future",
    "ServerInterceptorBase",
    "StreamStreamClientInterceptor",
    "StreamStreamMultiCallableBase",
    "StreamUnaryClientInterceptor",
    "StreamUnaryMultiCallableBase",
    "UnaryStreamClientInterceptor",
    "UnaryStreamMultiCallableBase",
    "UnaryUnaryClientInterceptor",
    "UnaryUnaryMultiCallableBase",
]
