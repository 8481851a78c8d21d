"""``BoundedCache``: the one bounded mapping behind every per-method cache.

Why it exists: the per-method caches (the app channel's routes, the engine's routes, a wrapped
channel's multicallables, a server's wrapped handlers, ``Tracing``'s method records) are filled by
whatever method path a caller sends. Unbounded, each new path kept about 1 KB for good, so the
callers of a proxy or of a catch-all server could grow its memory at will.

How a hit stays as cheap as before: the entries live in a plain ``dict``, :attr:`BoundedCache.data`,
and hot paths read it directly (``cache.data.get(key)``: the dict's own C method, no Python frame;
a ``dict`` subclass would not do, since CPython's fast call path for ``dict.get`` only takes exact
dicts). Only an insert, after a miss, runs Python code: under a lock, when the cache is full, it
first drops the oldest insertion, found in O(1) from a queue of keys in insertion order (asking
the dict for its first key would scan past the slots of every key already dropped, which grows
with the capacity).

Why "drop the oldest insertion" (FIFO):

- LRU would have to record every hit (``OrderedDict.move_to_end``), a cost on every call;
- emptying the cache when it is full makes every hot method miss at once (a burst of rebuilds,
  and ``Tracing`` would drop all its method records together);
- FIFO keeps the size at the bound, drops one entry per miss and needs nothing on a hit. Under a
  flood of new paths a hot entry is dropped once per ``capacity`` inserts and rebuilt, once, by
  its next call.

Thread safety: inserts and evictions run under the cache's lock, so racing misses never push the
size past the bound nor drop an entry twice; reads take no lock (a dict read is atomic under the
GIL, and an eviction is a single ``del``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import ClassVar, Generic, TypeVar

__all__ = ["DEFAULT_CACHE_CAPACITY", "BoundedCache"]

K = TypeVar("K")
V = TypeVar("V")

DEFAULT_CACHE_CAPACITY = 1024
"""Entries per cache unless told otherwise. A service has tens of methods, a proxy in front of
many services some hundreds: 1024 keeps any real method set whole while capping each cache near
1 MB (an entry is about 1 KB)."""


class BoundedCache(Generic[K, V]):
    """At most ``capacity`` entries; an insert into a full cache drops the oldest insertion.

    Read hits from :attr:`data` (a plain ``dict``: ``cache.data.get(key)``); write with
    ``cache[key] = value`` or :meth:`setdefault`, never into :attr:`data` directly.

    ``capacity`` defaults to :attr:`default_capacity`, read when the cache is made: to let every
    per-method cache of this package (channels, engines, wrapped channels, server interceptors,
    ``Tracing``) hold more method paths, set ``interceptors.BoundedCache.default_capacity`` before
    building them.

    ``on_evict(key, value)``, when given, runs under the cache's lock just *before* the entry is
    dropped (readers still see it meanwhile); it must not write to this cache.
    """

    __slots__ = ("_lock", "_on_evict", "_order", "capacity", "data")

    default_capacity: ClassVar[int] = DEFAULT_CACHE_CAPACITY
    """The capacity of caches made without one (1024)."""

    def __init__(
        self,
        capacity: int | None = None,
        on_evict: Callable[[K, V], object] | None = None,
    ) -> None:
        if capacity is None:
            capacity = type(self).default_capacity
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"BoundedCache: capacity must be an int >= 1, got {capacity!r}")
        self.capacity = capacity
        #: The entries, oldest insertion first. Read-only for users of the cache.
        self.data: dict[K, V] = {}
        # The keys of ``data``, oldest insertion first (a replaced value keeps its key's place).
        self._order: deque[K] = deque()
        self._lock = threading.Lock()
        self._on_evict = on_evict

    def __repr__(self) -> str:
        return f"BoundedCache(capacity={self.capacity}, size={len(self.data)})"

    def __len__(self) -> int:
        return len(self.data)

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def get(self, key: K, default: V | None = None) -> V | None:
        """``data.get(key, default)``; hot paths call ``data.get`` themselves (no Python frame)."""
        return self.data.get(key, default)

    def _insert(self, key: K, value: V) -> None:
        # Caller holds the lock (every insert takes it) and has checked that ``key`` is new.
        data = self.data
        order = self._order
        on_evict = self._on_evict
        while len(data) >= self.capacity and order:
            oldest = order.popleft()
            if on_evict is not None:
                on_evict(oldest, data[oldest])
            del data[oldest]
        data[key] = value
        order.append(key)

    def __setitem__(self, key: K, value: V) -> None:
        with self._lock:
            if key in self.data:
                self.data[key] = value
            else:
                self._insert(key, value)

    def setdefault(self, key: K, default: V) -> V:
        """The value under ``key``; when there is none, ``default`` goes in and is returned.
        Atomic: threads racing on one missing key all get the single value that went in."""
        with self._lock:
            if key in self.data:
                return self.data[key]
            self._insert(key, default)
            return default
