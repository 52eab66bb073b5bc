"""The OCSP service on the shared database: which CAs it serves, pre-signing, the HTTP app.

A responder node is stateless over the database: any number of them can run behind a
load balancer. Each node holds, per CA, only the delegated OCSP signer's key (and only in
live mode, or to answer nonce requests and cache misses); never a CA key.

Pre-signing takes a *lease* per CA (a short row-locked update of the CA's settings), so
with several refreshers on several nodes each certificate's response is re-signed once
per period: the lease holder signs what is due (missing, or past half its validity) in
batches, each batch one transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from dataclasses import dataclass

from cryptography import x509

from unica.errors import ConfigurationError, PinRequired, UnicaError
from unica.ocsp.dbsource import CachedPresignedStore, DBPresignedStore, DBStatusSource
from unica.ocsp.response import ResponseSigner, cert_id_for
from unica.ocsp.responder import Responder, ServedCA
from unica.store import models as m

log = logging.getLogger("unica.ocsp.service")

DEFAULT_PRESIGNED_VALIDITY = dt.timedelta(days=4)
#: nextUpdate - thisUpdate of a live answer, unless ``unica ocsp configure --live-validity`` says otherwise
DEFAULT_LIVE_VALIDITY = dt.timedelta(minutes=5)
LEASE = dt.timedelta(minutes=5)


def _settings_validity(settings: dict, key: str, default: dt.timedelta) -> dt.timedelta:
    hours = settings.get(key)
    return default if hours is None else dt.timedelta(hours=float(hours))


def served_cas(store, names: list[str] | None = None, *, load_signers: bool = True, require_signers: bool = False,
               pin: str | None = None, passphrase: str | None = None) -> list[ServedCA]:
    """The CAs to answer for (all CAs with a certificate, or ``names``), with their signers."""
    from sqlalchemy import select

    from unica.store.cas import get_ca_row

    with store.read() as s:
        rows = [get_ca_row(s, n) for n in names] if names else \
            s.scalars(select(m.CA).where(m.CA.cert_der.is_not(None)).order_by(m.CA.name)).all()
        plans = []
        for row in rows:
            if row.cert_der is None:
                raise ConfigurationError(f"CA {row.name!r} has no certificate yet; it cannot be served")
            signer_der = None
            if row.ocsp_signer_cert_id is not None:
                cert_row = s.get(m.Certificate, row.ocsp_signer_cert_id)
                signer_der = cert_row.der if cert_row is not None else None
            plans.append((row.name, row.cert_der, row.ocsp_mode, row.ocsp_signer_key_uri, signer_der,
                          dict(row.settings or {})))
    out = []
    for name, cert_der, mode, key_uri, signer_der, settings in plans:
        issuer = x509.load_der_x509_certificate(cert_der)
        signer = None
        if not load_signers:  # a lookup-only node: no key is opened, whatever secrets the environment holds
            if mode == "live":
                raise ConfigurationError(f"CA {name!r} is in live OCSP mode: a node without signer keys cannot "
                                         "answer for it (serve only pre-signed CAs with --ca)")
        elif key_uri and signer_der:
            signer = _load_signer(issuer, key_uri, signer_der, pin=pin, passphrase=passphrase,
                                  required=require_signers or mode == "live")
        if signer is None and load_signers and (require_signers or mode == "live"):
            raise ConfigurationError(f"CA {name!r} has no OCSP signer (run 'unica ocsp signer --ca {name}')")
        out.append(ServedCA(
            name=name, issuer=issuer, mode=mode, signer=signer,
            live_nonce=bool(settings.get("ocsp_live_nonce", signer is not None)) and signer is not None,
            live_validity=_settings_validity(settings, "ocsp_live_validity_hours", DEFAULT_LIVE_VALIDITY),
            presigned_validity=_settings_validity(settings, "ocsp_validity_hours", DEFAULT_PRESIGNED_VALIDITY),
        ))
    return out


def _load_signer(issuer, key_uri: str, signer_der: bytes, *, pin, passphrase, required: bool):
    from unica.hsm import load_key

    try:
        key = load_key(key_uri, pin=pin, passphrase=passphrase)
    except PinRequired:
        if required:
            raise
        log.info("OCSP signer key %s not loaded (no PIN/passphrase): lookup-only node", key_uri)
        return None
    return ResponseSigner(issuer, x509.load_der_x509_certificate(signer_der), key)


def configure_ocsp(store, ca_name: str, *, mode: str | None = None, live_nonce: bool | None = None,
                   validity: dt.timedelta | None = None, live_validity: dt.timedelta | None = None,
                   auth=None) -> dict:
    """Set a CA's OCSP mode (presigned | live), live answers to nonce requests, the validity
    of pre-signed responses and of live ones (nextUpdate - thisUpdate); audited. Returns the
    CA's OCSP settings.

    ``auth``: the operator acting (see :mod:`unica.auth`): once operators exist, operation
    ``ocsp.configure``, an admin's."""
    from unica.auth import Operation, authorized
    from unica.errors import InputError
    from unica.store.cas import get_ca_row

    if mode is not None and mode not in ("presigned", "live"):
        raise InputError(f"OCSP mode {mode!r} is not presigned or live")
    if validity is not None and validity <= dt.timedelta(0):
        raise InputError("the validity of pre-signed OCSP responses must be positive")
    if live_validity is not None and not dt.timedelta(minutes=1) <= live_validity <= dt.timedelta(days=7):
        raise InputError("the validity of live OCSP responses must be between 1 minute and 7 days")
    op = Operation("ocsp.configure", ca=ca_name, params={
        "mode": mode, "live_nonce": live_nonce,
        "validity_seconds": validity.total_seconds() if validity is not None else None,
        "live_validity_seconds": live_validity.total_seconds() if live_validity is not None else None})
    with authorized(store, op, auth), store.write() as s:
        ca = s.get(m.CA, get_ca_row(s, ca_name).id, with_for_update=True)
        settings = dict(ca.settings or {})
        changes = {}
        if mode is not None:
            ca.ocsp_mode = changes["mode"] = mode
        if live_nonce is not None:
            settings["ocsp_live_nonce"] = changes["live_nonce"] = live_nonce
        if validity is not None:
            settings["ocsp_validity_hours"] = changes["validity_hours"] = validity.total_seconds() / 3600
        if live_validity is not None:
            settings["ocsp_live_validity_hours"] = live_validity.total_seconds() / 3600
            changes["live_validity_minutes"] = live_validity.total_seconds() / 60
        ca.settings = settings
        store.audit(s, "ocsp.configured", ca=ca_name, details=changes)
        return {"ca": ca_name, **effective_settings(ca)}


def effective_settings(row) -> dict:
    """A CA row's OCSP settings as a responder applies them (defaults filled in): ``mode``,
    ``live_nonce``, ``validity_hours`` (pre-signed), ``live_validity_minutes``, and ``defaults``:
    the keys that are defaults rather than set."""
    settings = dict(row.settings or {})
    has_signer = row.ocsp_signer_key_uri is not None and row.ocsp_signer_cert_id is not None
    presigned = _settings_validity(settings, "ocsp_validity_hours", DEFAULT_PRESIGNED_VALIDITY)
    live = _settings_validity(settings, "ocsp_live_validity_hours", DEFAULT_LIVE_VALIDITY)
    defaults = [k for k, key in (("live_nonce", "ocsp_live_nonce"), ("validity_hours", "ocsp_validity_hours"),
                                 ("live_validity_minutes", "ocsp_live_validity_hours")) if settings.get(key) is None]
    return {
        "mode": row.ocsp_mode,
        # a node answers nonce requests live only if it also holds the signer key
        "live_nonce": bool(settings.get("ocsp_live_nonce", has_signer)),
        "validity_hours": presigned.total_seconds() / 3600,
        "live_validity_minutes": live.total_seconds() / 60,
        "defaults": defaults,
    }


def ocsp_status(store, names: list[str] | None = None, *, now: dt.datetime | None = None) -> list[dict]:
    """Each CA's OCSP state, read from the database (no key is opened): mode and settings
    (:func:`effective_settings`), the delegated signer (serial, validity, key URI), the
    coverage of pre-signed responses (certificates that need one, stored, fresh -- produced
    within half their validity --, expired), when the next refresh is due (``now`` when a
    response is missing or past half its validity; a running refresher acts within its
    ``--refresh-interval``), and the refresher's lease if one is at work."""
    from sqlalchemy import and_, case, func, select

    from unica.store.cas import get_ca_row

    now = now or m.utcnow()
    c, r = m.Certificate, m.OCSPResponse
    out = []
    with store.read() as s:
        rows = [get_ca_row(s, n) for n in names] if names else \
            s.scalars(select(m.CA).where(m.CA.cert_der.is_not(None)).order_by(m.CA.name)).all()
        for row in rows:
            eff = effective_settings(row)
            signer = None
            if row.ocsp_signer_cert_id is not None:
                cert = s.get(c, row.ocsp_signer_cert_id)
                if cert is not None:
                    signer = {"serial": cert.serial, "not_before": cert.not_before, "not_after": cert.not_after,
                              "key_uri": row.ocsp_signer_key_uri, "valid": cert.not_before <= now < cert.not_after
                              and cert.status == "valid", "status": cert.status}
            alive = and_(c.ca_id == row.id, c.not_after > now, c.status.in_(("valid", "revoked", "hold")))
            needed = s.execute(select(func.count()).select_from(c).where(alive)).scalar_one()
            half = dt.timedelta(hours=eff["validity_hours"]) / 2
            stored, fresh, expired, oldest, first_expiry = s.execute(
                select(func.count(), func.sum(case((r.produced_at >= now - half, 1), else_=0)),
                       func.sum(case((r.next_update <= now, 1), else_=0)), func.min(r.produced_at),
                       func.min(r.next_update))
                .select_from(r).join(c, c.id == r.cert_id).where(alive)).one()
            lease = (row.settings or {}).get("ocsp_presign_lease") or None
            if eff["mode"] != "presigned" or signer is None:  # nothing is (or can be) pre-signed
                next_refresh = None
            elif stored < needed or (fresh or 0) < stored:
                next_refresh = now
            else:
                next_refresh = oldest + half if oldest is not None else None
            out.append({
                "ca": row.name, **eff, "signer": signer,
                "presigned": {"certificates": needed, "stored": stored, "fresh": fresh or 0, "missing": needed - stored,
                              "expired": expired or 0, "oldest_produced_at": oldest,
                              "first_next_update": first_expiry},
                "next_refresh": next_refresh, "refresh_lease": lease,
            })
    return out


# --- pre-signing ----------------------------------------------------------------------


def _take_lease(store, ca_name: str, holder: str, now: dt.datetime) -> bool:
    from unica.store.cas import get_ca_row

    with store.write() as s:
        ca = s.get(m.CA, get_ca_row(s, ca_name).id, with_for_update=True)
        settings = dict(ca.settings or {})
        lease = settings.get("ocsp_presign_lease") or {}
        until = dt.datetime.fromisoformat(lease["until"]) if lease.get("until") else None
        if lease.get("holder") not in (None, holder) and until is not None and until > now:
            return False
        settings["ocsp_presign_lease"] = {"holder": holder, "until": (now + LEASE).isoformat()}
        ca.settings = settings
        return True


def _drop_lease(store, ca_name: str, holder: str) -> None:
    from unica.store.cas import get_ca_row

    with store.write() as s:
        ca = s.get(m.CA, get_ca_row(s, ca_name).id, with_for_update=True)
        settings = dict(ca.settings or {})
        if (settings.get("ocsp_presign_lease") or {}).get("holder") == holder:
            settings.pop("ocsp_presign_lease", None)
            ca.settings = settings


def lease_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


@dataclass(frozen=True)
class PresignResult:
    ca: str
    signed: int
    skipped: bool = False  # another refresher held the lease

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def presign(store, cas: list[ServedCA], *, everything: bool = False, serials: list[int] | None = None,
            batch: int = 500, now: dt.datetime | None = None, progress=None, auth=None,
            service: bool = False) -> list[PresignResult]:
    """Sign (and store) the responses that are due for each pre-signed CA.

    Due: missing, or produced before half of the validity ago (``everything``: all).
    ``serials``: just these (e.g. right after a revocation).

    ``auth``: the operator asking (see :mod:`unica.auth`): once operators exist, operation
    ``ocsp.presign``, by an admin or an ra-officer. ``service``: the responder's own periodic
    refresh (``unica ocsp serve``), which no operator asks for."""
    if service:
        return _presign(store, cas, everything=everything, serials=serials, batch=batch, now=now, progress=progress)
    from unica.auth import Operation, authorized

    names = [ca.name for ca in cas if ca.mode == "presigned"]
    op = Operation("ocsp.presign", ca=names[0] if len(names) == 1 else None, params={
        "cas": names, "everything": everything, "serials": [format(n, "x") for n in serials] if serials else serials})
    with authorized(store, op, auth):
        return _presign(store, cas, everything=everything, serials=serials, batch=batch, now=now, progress=progress)


def _presign(store, cas: list[ServedCA], *, everything: bool, serials: list[int] | None, batch: int,
             now: dt.datetime | None, progress) -> list[PresignResult]:
    source = DBStatusSource(store)
    dbstore = DBPresignedStore(store)
    holder = lease_holder()
    results = []
    for ca in cas:
        if ca.mode != "presigned":
            continue
        if ca.signer is None:
            raise ConfigurationError(f"CA {ca.name!r}: no OCSP signer key loaded; cannot pre-sign")
        t0 = now or m.utcnow().replace(microsecond=0)
        if not _take_lease(store, ca.name, holder, t0):
            results.append(PresignResult(ca.name, 0, skipped=True))
            continue
        try:
            if serials is not None:
                todo = list(serials)
            elif everything:
                todo = list(source.serials(ca.name))
            else:
                todo = dbstore.due(ca.name, t0 - ca.presigned_validity / 2)
            done = 0
            for i in range(0, len(todo), batch):
                chunk = todo[i:i + batch]
                signed = []
                for sn in chunk:
                    status = source.status(ca.name, sn)
                    signed.append((sn, ca.signer.sign(cert_id_for(ca.issuer, sn), status, t0,
                                                      t0 + ca.presigned_validity), status))
                done += dbstore.put_many(ca.name, signed)
                if progress:
                    progress(ca.name, done, len(todo))
            with store.write() as s:
                if done:
                    store.audit(s, "ocsp.presigned", ca=ca.name, details={"responses": done,
                                                                          "valid_until": (t0 + ca.presigned_validity).isoformat()})
            results.append(PresignResult(ca.name, done))
        finally:
            _drop_lease(store, ca.name, holder)
    return results


# --- the HTTP service -------------------------------------------------------------------


class DBResponderApp:
    """An ASGI app that builds its responder in the process that serves (after any fork):
    the database engine, the cache poller and the pre-sign refresher are per process."""

    def __init__(self, db_url: str | None, names: list[str] | None, *, pin=None, passphrase=None,
                 load_signers: bool = True, poll_interval: float = 0.25, refresh_interval: float = 30.0,
                 prefix: str = "/", access_log: logging.Logger | None = None):
        self.db_url = db_url
        self.names = names
        #: False: a lookup-only node (pre-signed CAs only); it never opens a key
        self.load_signers = load_signers
        self._secrets = {"pin": pin, "passphrase": passphrase} if load_signers else {}
        self.access_log = access_log
        self.poll_interval = poll_interval
        self.refresh_interval = refresh_interval
        self.prefix = prefix
        self._app = None
        self._cache: CachedPresignedStore | None = None
        self._stop = threading.Event()

    def build(self):
        """Build the responder now (raises on a bad configuration) and return the inner app."""
        from unica.ocsp.http import OCSPApp
        from unica.store import open_store

        store = open_store(self.db_url)
        cas = served_cas(store, self.names, load_signers=self.load_signers, **self._secrets)
        if not cas:
            raise ConfigurationError("no CA to serve (create one, or name it with --ca)")
        self._cache = CachedPresignedStore(DBPresignedStore(store), poll_interval=self.poll_interval)
        responder = Responder(cas, DBStatusSource(store), self._cache)
        self._store, self._cas = store, cas
        self._app = OCSPApp(responder, prefix=self.prefix, access_log=self.access_log)
        return self._app

    @property
    def cas(self) -> list[ServedCA]:
        """The CAs served, with their signers (after :meth:`build`)."""
        return list(self._cas)

    def reset(self) -> None:
        """Forget what :meth:`build` made (before forking workers: each builds its own)."""
        if self._app is not None:
            self._store.dispose()
        self._app = self._cache = None

    def start_background(self) -> None:
        self._cache.start()
        presigners = [ca for ca in self._cas if ca.mode == "presigned" and ca.signer is not None]
        if presigners and self.refresh_interval > 0 and self.load_signers:
            def refresh():
                while not self._stop.wait(self.refresh_interval):
                    try:
                        presign(self._store, presigners, service=True)
                    except UnicaError as e:
                        log.warning("OCSP pre-sign refresh failed: %s", e)
                    except Exception:
                        log.exception("OCSP pre-sign refresh failed")

            threading.Thread(target=refresh, name="unica-ocsp-refresher", daemon=True).start()

    # --- served by unica.ocsp.httpserver ---------------------------------------------------

    def startup(self) -> None:
        if self._app is None:
            self.build()
        self.start_background()
        self.handle = self._app.handle
        self.max_body = self._app.max_body

    def shutdown(self) -> None:
        self._stop.set()
        if self._cache is not None:
            self._cache.stop()

    # --- or as an ASGI app ------------------------------------------------------------------

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    try:
                        if self._app is None:
                            self.build()
                        self.start_background()
                    except Exception as e:
                        await send({"type": "lifespan.startup.failed", "message": str(e)})
                        return
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    self.shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await self._app(scope, receive, send)
