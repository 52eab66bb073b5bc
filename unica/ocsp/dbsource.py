"""The responder's database seams: certificate status and pre-signed responses from ``unica.store``.

- :class:`DBStatusSource` reads a certificate's status (live mode, and the pre-signer).
- :class:`DBPresignedStore` reads and writes pre-signed responses.
- :class:`CachedPresignedStore` keeps the responses it has served in memory, so the hot
  path of a pre-signed responder does not touch the database. A poller evicts every
  certificate whose status changed (revocations, holds, releases, re-signing) within
  ``poll_interval`` seconds, on every node. While the database is unreachable the cache keeps
  answering with what it holds until each response's nextUpdate, and recovers when the
  database returns.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import OrderedDict

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from unica.errors import StoreError, UnicaError
from unica.ocsp.response import GOOD, UNKNOWN, CertStatus, SignedResponse
from unica.store import models as m

log = logging.getLogger("unica.ocsp.db")

_REVOKED_STATES = ("revoked", "hold")


def _reason(text: str | None):
    from cryptography import x509

    return x509.ReasonFlags(text) if text else None


def _row_status(row) -> CertStatus:
    """The OCSP status of a certificate row (``status``, ``revoked_at``, ``revocation_reason``)."""
    if row.status in ("pending", "failed"):
        return UNKNOWN
    if row.status in _REVOKED_STATES:
        return CertStatus.revoked(row.revoked_at, _reason(row.revocation_reason))
    return GOOD


class _CAIds:
    """CA name -> id (names and ids never change)."""

    def __init__(self, store):
        self.store = store
        self._ids: dict[str, int] = {}

    def get(self, session, name: str) -> int | None:
        ca_id = self._ids.get(name)
        if ca_id is None:
            ca_id = session.execute(select(m.CA.id).where(m.CA.name == name)).scalar_one_or_none()
            if ca_id is not None:
                self._ids[name] = ca_id
        return ca_id


class DBStatusSource:
    """``status(ca, serial)`` from the certificates table (one indexed query)."""

    def __init__(self, store):
        self.store = store
        self._ca = _CAIds(store)

    def status(self, ca: str, serial: int) -> CertStatus:
        c = m.Certificate
        with self.store.read() as s:
            ca_id = self._ca.get(s, ca)
            if ca_id is None:
                return UNKNOWN
            row = s.execute(select(c.status, c.revoked_at, c.revocation_reason)
                            .where(c.ca_id == ca_id, c.serial == m.serial_hex(serial))).first()
        return UNKNOWN if row is None else _row_status(row)

    def serials(self, ca: str):
        c = m.Certificate
        now = m.utcnow()
        with self.store.read() as s:
            ca_id = self._ca.get(s, ca)
            if ca_id is None:
                return []
            rows = s.execute(select(c.serial).where(c.ca_id == ca_id, c.not_after > now,
                                                    c.status.in_(("valid", "revoked", "hold")))).scalars().all()
        return [int(x, 16) for x in rows]


class DBPresignedStore:
    """Pre-signed responses in the ``ocsp_responses`` table."""

    def __init__(self, store):
        self.store = store
        self._ca = _CAIds(store)

    def get(self, ca: str, serial: int) -> SignedResponse | None:
        c, r = m.Certificate, m.OCSPResponse
        with self.store.read() as s:
            ca_id = self._ca.get(s, ca)
            if ca_id is None:
                return None
            row = s.execute(select(r.der, r.produced_at, r.this_update, r.next_update)
                            .join(c, c.id == r.cert_id)
                            .where(c.ca_id == ca_id, c.serial == m.serial_hex(serial))).first()
        return None if row is None else SignedResponse.make(row.der, row.produced_at, row.this_update,
                                                            row.next_update)

    def put(self, ca: str, serial: int, response: SignedResponse) -> None:
        self.put_many(ca, [(serial, response)])

    def put_many(self, ca: str, items) -> int:
        """Store many responses in one transaction (the pre-signer's batches).

        ``items``: ``(serial, response)`` or ``(serial, response, status)`` where ``status`` is
        the :class:`CertStatus` the response was signed with. With it, the certificate row is
        locked and a response whose status is no longer the certificate's (it was revoked,
        held or released while the batch was being signed) is dropped, not stored: a
        concurrent revocation must never be followed by a stored "good"."""
        c = m.Certificate
        n = 0
        with self.store.write() as s:
            ca_id = self._ca.get(s, ca)
            if ca_id is None:
                raise StoreError(f"no CA named {ca!r}")
            for serial, resp, *signed_with in items:
                q = select(c.id, c.status, c.revoked_at, c.revocation_reason).where(
                    c.ca_id == ca_id, c.serial == m.serial_hex(serial))
                cert = s.execute(q.with_for_update() if signed_with else q).first()
                if cert is None:
                    continue
                if signed_with and _row_status(cert) != signed_with[0]:
                    continue  # changed since it was read: the next refresh signs the new status
                row = s.get(m.OCSPResponse, cert.id)
                if row is None:
                    s.add(m.OCSPResponse(cert_id=cert.id, der=resp.der, this_update=resp.this_update,
                                         next_update=resp.next_update, produced_at=resp.produced_at))
                else:
                    row.der, row.this_update = resp.der, resp.this_update
                    row.next_update, row.produced_at = resp.next_update, resp.produced_at
                n += 1
        return n

    def due(self, ca: str, before: dt.datetime) -> list[int]:
        """Serials whose response is missing or was produced before ``before``."""
        c, r = m.Certificate, m.OCSPResponse
        now = m.utcnow()
        with self.store.read() as s:
            ca_id = self._ca.get(s, ca)
            if ca_id is None:
                return []
            rows = s.execute(select(c.serial).outerjoin(r, r.cert_id == c.id)
                             .where(c.ca_id == ca_id, c.not_after > now,
                                    c.status.in_(("valid", "revoked", "hold")),
                                    or_(r.cert_id.is_(None), r.produced_at < before))).scalars().all()
        return [int(x, 16) for x in rows]


class CachedPresignedStore:
    """An in-memory cache in front of :class:`DBPresignedStore` (see the module docstring)."""

    def __init__(self, inner: DBPresignedStore, *, max_entries: int = 200_000, poll_interval: float = 0.25,
                 lookback: dt.timedelta = dt.timedelta(seconds=30)):
        self.inner = inner
        self.store = inner.store
        self.max_entries = max_entries
        self.poll_interval = poll_interval
        self.lookback = lookback
        self._cache: OrderedDict[tuple[str, int], SignedResponse] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._since = m.utcnow() - lookback
        self.db_ok = True
        self._names: dict[int, str] = {}

    # the responder's calls ---------------------------------------------------------

    def get(self, ca: str, serial: int) -> SignedResponse | None:
        key = (ca, serial)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        try:
            r = self.inner.get(ca, serial)
            self.db_ok = True
        except (SQLAlchemyError, UnicaError) as e:
            self.db_ok = False
            log.warning("OCSP database lookup failed (serving from cache only): %s", e)
            raise StoreError("database unavailable") from None
        if r is not None:
            with self._lock:
                self._cache[key] = r
                if len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
        return r

    def put(self, ca: str, serial: int, response: SignedResponse) -> None:
        self.inner.put(ca, serial, response)
        with self._lock:
            self._cache[(ca, serial)] = response

    def due(self, ca: str, before: dt.datetime):
        return self.inner.due(ca, before)

    def __len__(self) -> int:
        return len(self._cache)

    # the poller --------------------------------------------------------------------

    def poll_once(self) -> int:
        """Evict certificates whose status or response changed since the last poll; return how many.

        An entry is evicted only if the database no longer holds the very response cached (it
        was re-signed, or dropped by a revocation, hold or release): what is current stays
        cached, so it is still served if the database goes down right after a change."""
        c, r = m.Certificate, m.OCSPResponse
        started = m.utcnow()
        since = self._since
        with self.store.read() as s:
            if not self._names:
                self._names = dict(s.execute(select(m.CA.id, m.CA.name)).all())
            # two indexed queries (an OR across the join would scan every certificate each poll)
            changed = s.execute(select(c.ca_id, c.serial, r.der).outerjoin(r, r.cert_id == c.id)
                                .where(c.updated_at > since)).all()
            changed += s.execute(select(c.ca_id, c.serial, r.der).join(r, r.cert_id == c.id)
                                 .where(r.produced_at > since)).all()
            if any(ca_id not in self._names for ca_id, _, _ in changed):
                self._names = dict(s.execute(select(m.CA.id, m.CA.name)).all())
        n = 0
        with self._lock:
            for ca_id, serial_hex, der in changed:
                key = (self._names.get(ca_id), int(serial_hex, 16))
                hit = self._cache.get(key)
                if hit is not None and hit.der != der:
                    del self._cache[key]
                    n += 1
        # look back a little: a transaction that started earlier may commit after this poll
        self._since = started - self.lookback
        return n

    def start(self) -> None:
        if self._thread is not None:
            return

        def run():
            while not self._stop.wait(self.poll_interval):
                try:
                    self.poll_once()
                    self.db_ok = True
                except Exception as e:  # keep serving from the cache; retry next tick
                    if self.db_ok:
                        log.warning("OCSP database poll failed (serving cached responses): %s", e)
                    self.db_ok = False

        self._thread = threading.Thread(target=run, name="unica-ocsp-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def drop_responses(store, ca_name: str) -> int:
    """Forget every pre-signed response of a CA (e.g. after its OCSP signer changed)."""
    with store.write() as s:
        ca_id = s.execute(select(m.CA.id).where(m.CA.name == ca_name)).scalar_one()
        ids = select(m.Certificate.id).where(m.Certificate.ca_id == ca_id)
        res = s.execute(delete(m.OCSPResponse).where(m.OCSPResponse.cert_id.in_(ids)))
        return res.rowcount or 0


def count_responses(store, ca_name: str) -> int:
    with store.read() as s:
        return s.execute(select(func.count()).select_from(m.OCSPResponse).join(
            m.Certificate, m.Certificate.id == m.OCSPResponse.cert_id).join(m.CA, m.CA.id == m.Certificate.ca_id)
            .where(m.CA.name == ca_name)).scalar_one()
