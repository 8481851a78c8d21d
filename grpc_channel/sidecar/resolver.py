"""Name resolution: app id -> the ``host:port`` of that app's sidecar.

:class:`PeersResolver` reads, in increasing precedence:

1. ``peers=``: a mapping given in code;
2. the environment variable ``GRPC_CHANNEL_PEERS`` (:data:`PEERS_ENV`), ``id=host:port,id2=...``
   (blanks around items ignored; an empty variable is no peers);
3. the peers file ``path=``: a JSON or YAML mapping ``{app id: "host:port"}`` (YAML is a superset
   of JSON, so one parser reads both; an empty file is no peers).

The file is re-read when its modification time or size changes, checked at most once every
``recheck_seconds`` (default 1.0; 0 checks on every lookup) and only on a lookup. A file that is
missing or invalid when the resolver is built raises :class:`PeersFileError`; one that turns bad
later (say, half written) keeps the last good mapping until it is valid again, and
:attr:`PeersResolver.last_error` says why.

An address is ``host:port`` with a port in 1..65535 (``[v6]:port`` for IPv6). An unknown app id
raises :class:`UnknownAppError` (a ``LookupError``) naming it; the proxy turns it into NOT_FOUND.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import yaml

__all__ = [
    "PEERS_ENV",
    "PeersFileError",
    "PeersResolver",
    "Resolver",
    "UnknownAppError",
    "check_address",
    "parse_peers_env",
]

PEERS_ENV = "GRPC_CHANNEL_PEERS"


class Resolver(Protocol):
    """What the sidecar needs: the sidecar address of an app id, or :class:`UnknownAppError`."""

    def resolve(self, app_id: str) -> str: ...


class UnknownAppError(LookupError):
    """No address is known for ``app_id``."""

    def __init__(self, app_id: str) -> None:
        super().__init__(f"no address known for app id {app_id!r}")
        self.app_id = app_id


class PeersFileError(ValueError):
    """The peers file (or environment variable) cannot be read or holds a bad entry."""


def check_address(address: object, where: str) -> str:
    """``address`` if it is ``host:port`` with a port in 1..65535; else :class:`PeersFileError`
    saying ``where`` it came from."""
    if not isinstance(address, str):
        raise PeersFileError(
            f"{where}: the address must be a 'host:port' string, got {type(address).__name__}"
        )
    host, sep, port = address.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or any(ch.isspace() for ch in host):
        raise PeersFileError(f"{where}: {address!r} is not 'host:port'")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise PeersFileError(f"{where}: the port of {address!r} must be 1..65535")
    return address.strip()


def _check_app_id(app_id: object, where: str) -> str:
    if not isinstance(app_id, str) or not app_id.strip():
        raise PeersFileError(f"{where}: an app id must be a non-empty string, got {app_id!r}")
    return app_id.strip()


def parse_peers_env(value: str, where: str = PEERS_ENV) -> dict[str, str]:
    """``id=host:port,id2=host:port`` as a dict; a malformed item raises :class:`PeersFileError`."""
    peers: dict[str, str] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        app_id, sep, address = item.partition("=")
        if not sep:
            raise PeersFileError(f"{where}: {item.strip()!r} is not 'id=host:port'")
        key = _check_app_id(app_id, where)
        peers[key] = check_address(address, f"{where} entry {key!r}")
    return peers


def _parse_peers_text(text: str, where: str) -> dict[str, str]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise PeersFileError(f"{where}: not valid JSON or YAML ({err})") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PeersFileError(
            f"{where}: expected a mapping of app id to 'host:port', got {type(data).__name__}"
        )
    peers: dict[str, str] = {}
    for app_id, address in data.items():
        key = _check_app_id(app_id, where)
        peers[key] = check_address(address, f"{where} entry {key!r}")
    return peers


_Signature = tuple[int, int]  # (mtime_ns, size): a rewrite changes one of them


class PeersResolver:
    """Resolves app ids from code, the environment and a peers file (see the module docs).

    Thread-safe; a lookup may stat (and re-read) the file, a small blocking read.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        peers: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        recheck_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if recheck_seconds < 0:
            raise ValueError(f"recheck_seconds must be >= 0, got {recheck_seconds!r}")
        env = os.environ if environ is None else environ
        base = {
            _check_app_id(k, "peers"): check_address(v, f"peers entry {k!r}")
            for k, v in (peers or {}).items()
        }
        base.update(parse_peers_env(env.get(PEERS_ENV, "")))
        self._base = base
        self._path = None if path is None else os.fspath(path)
        self._recheck = recheck_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._from_file: dict[str, str] = {}
        self._signature: _Signature | None = None
        self._checked_at = clock()
        self.last_error: str | None = None
        """Why the latest reload failed (the last good mapping stays in use); None after a good
        one."""
        if self._path is not None:
            signature = self._stat()
            self._from_file = self._read()
            self._signature = signature

    def _stat(self) -> _Signature:
        assert self._path is not None
        try:
            st = os.stat(self._path)
        except OSError as err:
            raise PeersFileError(f"peers file {self._path!r}: {err.strerror}") from err
        return (st.st_mtime_ns, st.st_size)

    def _read(self) -> dict[str, str]:
        assert self._path is not None
        try:
            with open(self._path, encoding="utf-8") as file:
                text = file.read()
        except (OSError, UnicodeDecodeError) as err:
            raise PeersFileError(f"peers file {self._path!r}: {err}") from err
        return _parse_peers_text(text, f"peers file {self._path!r}")

    def _maybe_reload(self) -> None:
        now = self._clock()
        if self._path is None or now - self._checked_at < self._recheck:
            return
        self._checked_at = now
        try:
            signature = self._stat()
            if signature == self._signature:
                return
            self._from_file = self._read()
            self._signature = signature
            self.last_error = None
        except PeersFileError as err:
            self.last_error = str(err)

    def peers(self) -> dict[str, str]:
        """The current mapping (a copy), after a reload check."""
        with self._lock:
            self._maybe_reload()
            return {**self._base, **self._from_file}

    def resolve(self, app_id: str) -> str:
        """The address of ``app_id``'s sidecar; :class:`UnknownAppError` if none is known."""
        with self._lock:
            self._maybe_reload()
            found = self._from_file.get(app_id) or self._base.get(app_id)
        if found is None:
            raise UnknownAppError(app_id)
        return found
