"""Where the responder gets answers: the two seams to the database.

- :class:`StatusSource` answers "what is the status of serial S of CA C?" (live mode, and
  the pre-signer). The database-backed implementation (``unica.store``) will read the
  certificate table; :class:`InMemoryStatusSource` serves tests and benchmarks.
- :class:`PresignedStore` holds pre-produced responses (pre-signed mode): ``get`` is the
  responder's only call on the hot path; ``put`` is the pre-signer's.

Both are keyed by the CA's *name* (as the store names CAs) and the integer serial; the
mapping from a request's issuer hashes to the CA name is done once, in memory, by
:class:`unica.ocsp.responder.IssuerIndex`. Implementations must be safe to call from the
server's event loop thread (they may block briefly; a database source should use a
connection pool and a short statement timeout).
"""

from __future__ import annotations

import datetime as _dt
import threading
from typing import Iterable, Iterator, Protocol, runtime_checkable

from unica.ocsp.response import GOOD, UNKNOWN, CertStatus, SignedResponse

__all__ = ["StatusSource", "PresignedStore", "InMemoryStatusSource", "InMemoryPresignedStore"]


@runtime_checkable
class StatusSource(Protocol):
    def status(self, ca: str, serial: int) -> CertStatus:
        """The status of a certificate; :data:`UNKNOWN` if CA ``ca`` never issued ``serial``."""

    def serials(self, ca: str) -> Iterable[int]:
        """Every serial CA ``ca`` has issued and that has not expired (for pre-signing)."""


@runtime_checkable
class PresignedStore(Protocol):
    def get(self, ca: str, serial: int) -> SignedResponse | None:
        """The stored response (SHA-1 CertID), or None."""

    def put(self, ca: str, serial: int, response: SignedResponse) -> None:
        """Store (replace) the response for a certificate."""

    def due(self, ca: str, before: _dt.datetime) -> Iterable[int]:
        """Serials whose stored response was produced before ``before`` (refresh due)."""


class InMemoryStatusSource:
    """Statuses in a dict; ``issue`` / ``revoke`` / ``release`` change them at run time."""

    def __init__(self) -> None:
        self._status: dict[tuple[str, int], CertStatus] = {}
        self._lock = threading.Lock()
        self._listeners: list = []

    def on_change(self, callback) -> None:
        """``callback(ca, serial)`` after every change (the pre-signer re-signs at once)."""
        self._listeners.append(callback)

    def _set(self, ca: str, serial: int, status: CertStatus) -> None:
        with self._lock:
            self._status[(ca, serial)] = status
        for cb in self._listeners:
            cb(ca, serial)

    def issue(self, ca: str, serial: int) -> None:
        self._set(ca, serial, GOOD)

    def revoke(self, ca: str, serial: int, at: _dt.datetime, reason=None) -> None:
        self._set(ca, serial, CertStatus.revoked(at, reason))

    def release(self, ca: str, serial: int) -> None:
        self._set(ca, serial, GOOD)

    def status(self, ca: str, serial: int) -> CertStatus:
        return self._status.get((ca, serial), UNKNOWN)

    def serials(self, ca: str) -> Iterator[int]:
        with self._lock:
            keys = [s for (c, s) in self._status if c == ca]
        return iter(keys)


class InMemoryPresignedStore:
    def __init__(self) -> None:
        self._data: dict[tuple[str, int], SignedResponse] = {}

    def get(self, ca: str, serial: int) -> SignedResponse | None:
        return self._data.get((ca, serial))

    def put(self, ca: str, serial: int, response: SignedResponse) -> None:
        self._data[(ca, serial)] = response

    def due(self, ca: str, before: _dt.datetime) -> list[int]:
        return [s for (c, s), r in list(self._data.items()) if c == ca and r.produced_at < before]

    def __len__(self) -> int:
        return len(self._data)
