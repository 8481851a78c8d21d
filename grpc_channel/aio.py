"""The asyncio app channel: ``await grpc_channel.aio.dial(target, *dial_options)``.

The same options, requests and responses as the sync :class:`grpc_channel.Channel`; every method
that does I/O is a coroutine, and cancelling the awaiting task cancels the RPC.
"""

from __future__ import annotations

from grpc_channel._async_channel import AsyncAppChannel, AsyncChannel, dial

__all__ = ["AsyncAppChannel", "AsyncChannel", "dial"]
