"""Issuance with the database: refuse early, record the intent, sign once, store.

:class:`IssuingCA` binds a store, one CA (its engine view and its loaded key) and runs
:meth:`IssuingCA.issue` for each request:

1. parse and check the request, build and lint a throwaway-signed copy (:func:`engine.prepare`);
   a refusal is written to the audit log ("certificate.refused") and raised;
2. transaction 1: a ``pending`` certificate row holding the exact TBSCertificate and the
   serial (a collision on the per-issuer unique serial is retried with a new serial);
3. the one real signature over that TBSCertificate;
4. transaction 2: the certificate DER, its fingerprint, status ``valid`` and the audit entry --
   only if the row still holds exactly the TBSCertificate that was signed (a condition of
   the UPDATE); the stored certificate then replaces the recorded TBS, which it contains.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
from dataclasses import dataclass

from unica.ca import engine
from unica.ca.names import name_text
from unica.ca.records import get_ca_row, issuer_from_row
from unica.ca.request import CSRRequest, csr_request, load_csr, parse_csr
from unica.errors import PolicyViolation, StoreError, UnicaError
from unica.policies import Profile, get_profile

MAX_SERIAL_TRIES = 5
#: bulk re-issuance without linting verifies the signature of every Nth certificate of a batch
#: (the first included) instead of each one; the CA key was matched to the CA certificate when loaded
VERIFY_EVERY = 32


@dataclass(frozen=True)
class Issued:
    serial: int
    serial_hex: str
    der: bytes
    fingerprint_sha256: str
    profile: str
    ca: str
    linted: bool


class IssuingCA:
    """One CA ready to issue: its row's facts, its key, the store."""

    #: the registry's owner of what this issuer stores ({"enterprise_id", "office"}: an
    #: enrollment's copy of the issuer, :mod:`unica.ra.enrollment`), written with the certificate
    _owner: dict | None = None

    def __init__(self, store, ca_name: str, key=None, *, key_loader=None):
        self.store = store
        with store.read() as s:
            row = get_ca_row(s, ca_name)
            self.ca_id = row.id
            self.name = row.name
            self.key_uri = row.key_uri
            self.allowed_profiles = tuple(row.profiles or ())
            try:
                self._issuer, self._unusable = issuer_from_row(row), None
            except UnicaError as e:
                self._issuer, self._unusable = None, e
        self._key = key
        self._key_loader = key_loader
        self._office: str | None = None  # the RA office of the officer issuing (recorded with each certificate)

    @property
    def issuer(self) -> engine.Issuer:
        if self._unusable is not None:
            raise self._unusable
        return self._issuer

    @property
    def key(self):
        if self._key is None:
            from unica.hsm import load_key

            key = self._key_loader() if self._key_loader else load_key(self.key_uri)
            engine.check_key_matches(key, self.issuer.public_key)
            self._key = key
        return self._key

    def set_key_loader(self, loader) -> None:
        """Load the CA key with ``loader()`` when first needed (after the request passed its checks)."""
        self._key_loader = loader

    def profile(self, name: str | Profile) -> Profile:
        p = name if isinstance(name, Profile) else get_profile(name)
        if self.allowed_profiles and p.name not in self.allowed_profiles:
            raise PolicyViolation(f"CA {self.name!r} does not issue under profile {p.name!r} "
                                  f"(its profile set: {', '.join(self.allowed_profiles)})")
        return p

    def refuse(self, reason: UnicaError, *, requester: str | None, profile: str | None, source: str) -> None:
        """Record a refused request in the audit log (its own transaction)."""
        if isinstance(reason, StoreError):
            return
        try:
            with self.store.write() as s:
                self.store.audit(s, "certificate.refused", ca=self.name, target=source, details={
                    "reason": " ".join(str(reason).split()), "error": type(reason).__name__,
                    "profile": profile, "requester": requester})
        except UnicaError:
            pass

    def issue(self, csr: bytes | CSRRequest, profile: str | Profile, *, requester: str | None = None,
              lint: bool = True, source: str = "CSR", now: dt.datetime | None = None, auth=None) -> Issued:
        """Issue one certificate for ``csr`` under ``profile`` (see the module docstring).

        ``auth``: the operator (see :mod:`unica.auth`); an RA officer's certificate records their
        office. Under an approval rule for ``cert.issue:PROFILE`` this raises ApprovalPending."""
        pname = profile.name if isinstance(profile, Profile) else profile
        with self._authorized(issue_operation(self.name, pname, [csr], requester, lint), auth):
            return self._issue(csr, profile, requester=requester, lint=lint, source=source, now=now)

    @contextlib.contextmanager
    def _authorized(self, op, auth):
        from unica.auth import authorized

        with authorized(self.store, op, auth) as actor:
            self._office = actor.office if "ra-officer" in actor.roles else None
            try:
                yield actor
            finally:
                self._office = None

    def _issue(self, csr, profile, *, requester, lint, source, now) -> Issued:
        pname = profile.name if isinstance(profile, Profile) else profile
        try:
            prof = self.profile(profile)
            request = csr if isinstance(csr, CSRRequest) else parse_csr(csr, source)
            issuer = self.issuer
            prepared = engine.prepare(issuer, prof, request, now=now, lint=lint, where=source)
            key = self.key  # loaded (PIN asked) only for a request that passed every check
        except UnicaError as e:
            self.refuse(e, requester=requester, profile=pname, source=source)
            raise
        prepared = self._record_intent(prepared, prof, issuer, request, requester, lint, now)
        try:
            cert_der = engine.sign_prepared(prepared, key, issuer.public_key)
        except BaseException as e:
            self._mark_failed(prepared, e)
            raise
        return self._store_signed(prepared, cert_der, requester)

    def issue_many(self, requests: list, profile: str | Profile, *, requester: str | None = None,
                   lint: bool = True, now: dt.datetime | None = None, sources: list[str] | None = None,
                   auth=None) -> list:
        """Issue a batch (bulk re-issuance): the same steps as :meth:`issue`, but the intents
        of the whole batch are recorded in one transaction before any is signed, and the
        signed certificates are stored, with one audit entry listing them, in a second.

        With ``lint=False`` (the explicit, audited bulk mode) pkilint is skipped and the
        signature of every :data:`VERIFY_EVERY`-th certificate (the first included) is verified
        after signing rather than each one; with linting on, every signature is verified.

        Returns one :class:`Issued` or the :class:`UnicaError` that refused it, per request.

        Without linting, Python's cyclic garbage collector is paused for the batch: nothing on
        this path makes reference cycles, and after pkilint has been loaded each full
        collection would scan its tables again (a third of the time of a batch)."""
        pname = profile.name if isinstance(profile, Profile) else profile
        with self._authorized(issue_operation(self.name, pname, requests, requester, lint), auth):
            with _gc_paused(not lint):
                return self._issue_many(requests, profile, requester=requester, lint=lint, now=now, sources=sources)

    def _issue_many(self, requests, profile, *, requester, lint, now, sources) -> list:
        pname = profile.name if isinstance(profile, Profile) else profile
        prof = self.profile(profile)
        issuer = self.issuer
        out: list = [None] * len(requests)
        # one step at a time over the whole batch (load and verify all requests, read them all,
        # check and encode all, then sign all): each loop stays in the caches, which
        # interleaving the steps per request does not (15% of the time of a batch)
        def step(items, do):  # [(i, source, x)] -> [(i, source, do(x, source))]; a refusal is audited
            done = []
            for i, source, x in items:
                try:
                    done.append((i, source, do(x, source)))
                except UnicaError as e:
                    self.refuse(e, requester=requester, profile=pname, source=source)
                    out[i] = e
            return done

        given = [(i, sources[i] if sources else f"request {i}", r) for i, r in enumerate(requests)]
        now = now or dt.datetime.now(dt.timezone.utc)  # one issuance time for the whole batch
        loaded = step(given, lambda r, src: r if isinstance(r, CSRRequest) else load_csr(r, src))
        parsed = step(loaded, lambda r, src: r if isinstance(r, CSRRequest) else csr_request(r, src))
        prepared = step(parsed, lambda r, src: (r, engine.prepare(issuer, prof, r, now=now, lint=lint, where=src)))
        ready = [(i, request, p) for i, _, (request, p) in prepared]
        if not ready:
            return out
        key = self.key
        try:
            self._insert_intents([p for _, _, p in ready], requester)
        except _Collision:
            for i, request, _ in ready:  # astronomically rare: fall back to one by one
                out[i] = self._issue(request, prof, requester=requester, lint=lint, source="CSR", now=now)
            return out
        try:
            ders = engine.sign_many([p for _, _, p in ready], key, issuer.public_key,
                                    verify_every=1 if lint else VERIFY_EVERY)
        except BaseException as e:  # no certificate of the batch leaves: every intent is marked failed
            self._mark_failed_many([p for _, _, p in ready], e)
            raise
        signed = [(i, p, d) for (i, _, p), d in zip(ready, ders)]
        for i, issued in zip([i for i, _, _ in signed], self._store_many(signed, requester, lint)):
            out[i] = issued
        return out

    # --- the two transactions (SQLAlchemy Core statements: this is the hot path) -----

    _INTENT_COLUMNS = ("ca_id", "serial", "status", "subject_text", "subject_der", "sans", "not_before",
                       "not_after", "profile", "is_ca", "tbs_der", "spki_sha256", "requester", "created_at",
                       "updated_at", "office")

    def _intent_row(self, p, requester, now) -> tuple:
        from unica.store import models as m

        return (self.ca_id, m.serial_hex(p.serial), "pending", name_text(p.subject), p.subject_der,
                list(p.sans), p.not_before, p.not_after, p.profile, p.is_ca, p.tbs_der, p.spki_sha256, requester,
                now, now, self._office)

    def _insert_intents(self, prepared: list, requester) -> None:
        from sqlalchemy.exc import IntegrityError

        from unica.store import models as m
        from unica.store.bulk import insert_many

        now = m.utcnow()
        try:
            with self.store.write_connection() as conn:
                insert_many(conn, m.Certificate.__table__, self._INTENT_COLUMNS,
                            [self._intent_row(p, requester, now) for p in prepared])
        except IntegrityError:
            raise _Collision() from None

    def _record_intent(self, prepared, prof, issuer, request, requester, lint, now):
        for attempt in range(MAX_SERIAL_TRIES):
            try:
                self._insert_intents([prepared], requester)
                return prepared
            except _Collision:
                if attempt == MAX_SERIAL_TRIES - 1:
                    raise StoreError(f"CA {self.name!r}: {MAX_SERIAL_TRIES} serial collisions in a row") from None
                # a serial collision: same contents, new serial (re-linted: the serial is in the TBS)
                prepared = engine.prepare(issuer, prof, request, now=now, lint=lint)
        raise AssertionError("unreachable")  # pragma: no cover

    def _mark_failed(self, prepared, error: BaseException) -> None:
        self._mark_failed_many([prepared], error)

    def _mark_failed_many(self, prepared: list, error: BaseException) -> None:
        """Abandon recorded intents whose signing failed (one transaction, one audit entry)."""
        from unica.store import models as m
        from unica.store.bulk import update_many

        serials = [m.serial_hex(p.serial) for p in prepared]
        now = m.utcnow()
        try:
            with self.store.write() as s:
                update_many(s.connection(), m.Certificate.__table__, ("status", "updated_at"), ("ca_id", "serial"),
                            [("failed", now, self.ca_id, sh) for sh in serials], where="status = 'pending'")
                details = {"error": type(error).__name__, "reason": " ".join(str(error).split())}
                if len(serials) > 1:
                    details.update(count=len(serials), serials=serials)
                self.store.audit(s, "certificate.signing_failed", ca=self.name, target=",".join(serials[:20]),
                                 details=details)
        except UnicaError:
            pass

    @staticmethod
    def _lint_note(linted: bool) -> str:
        return "pkilint clean" if linted else "SKIPPED (--no-lint, bulk re-issuance)"

    def _store_signed(self, prepared, cert_der: bytes, requester) -> Issued:
        from unica.store import models as m

        fp = engine.fingerprint(cert_der)
        sh = m.serial_hex(prepared.serial)
        with self.store.write_connection() as s:
            params = {"b_ca": self.ca_id, "b_serial": sh, "b_tbs": prepared.tbs_der, "b_der": cert_der, "b_fp": fp,
                      "b_now": m.utcnow()}
            if self._owner is not None:
                params.update(b_ent=self._owner["enterprise_id"], b_office=self._owner["office"])
            done = s.execute(_store_statement(self._owner is not None), params)
            if done.rowcount != 1:
                raise StoreError(f"CA {self.name!r}: the recorded intent for serial {sh} is gone")
            details = {"profile": prepared.profile, "fingerprint_sha256": fp, "requester": requester,
                       "subject": name_text(prepared.subject), "lint": self._lint_note(prepared.linted)}
            if prepared.ignored_extensions:
                details["ignored_requested_extensions"] = list(prepared.ignored_extensions)
            self.store.audit(s, "certificate.issued", ca=self.name, target=sh, details=details)
        return Issued(prepared.serial, sh, cert_der, fp, prepared.profile, self.name, prepared.linted)

    def _store_many(self, signed: list, requester, lint: bool) -> list:
        """Store a signed batch; one :class:`Issued` per certificate stored, or a
        :class:`StoreError` for one whose intent was rolled back meanwhile (recovery on another
        node): that certificate is discarded, never handed out."""
        from sqlalchemy import select

        from unica.store import models as m
        from unica.store.bulk import update_many

        t = m.Certificate.__table__
        now = m.utcnow()
        rows = [{"b_serial": m.serial_hex(p.serial), "b_der": d, "b_fp": engine.fingerprint(d)} for _, p, d in signed]
        with self.store.write_connection() as s:
            changed = update_many(s, t, ("der", "fingerprint_sha256", "status", "updated_at", "tbs_der"),
                                  ("ca_id", "serial", "tbs_der"),
                                  [(r["b_der"], r["b_fp"], "valid", now, None, self.ca_id, r["b_serial"], p.tbs_der)
                                   for r, (_, p, _) in zip(rows, signed)],
                                  where="status = 'pending'")
            stored: set[str] = {r["b_serial"] for r in rows} if changed == len(rows) else set()
            for i in range(0, len(rows) if changed != len(rows) else 0, 1000):
                part = rows[i:i + 1000]
                fps = {r["b_serial"]: r["b_fp"] for r in part}
                stored.update(serial for serial, fp in s.execute(
                    select(t.c.serial, t.c.fingerprint_sha256).where(t.c.ca_id == self.ca_id, t.c.status == "valid",
                                                                     t.c.serial.in_(list(fps)))) if fps[serial] == fp)
            kept = [r for r in rows if r["b_serial"] in stored]
            gone = [r["b_serial"] for r in rows if r["b_serial"] not in stored]
            if kept:
                self.store.audit(s, "certificate.issued_batch", ca=self.name, details={
                    "count": len(kept), "profile": signed[0][1].profile, "requester": requester,
                    "lint": self._lint_note(lint),
                    "signatures_verified": "all" if lint else f"1 in {VERIFY_EVERY}, the first included",
                    "certificates": [[r["b_serial"], r["b_fp"]] for r in kept]})
            if gone:
                self.store.audit(s, "certificate.discarded", ca=self.name, target=",".join(gone[:20]), details={
                    "count": len(gone), "serials": gone,
                    "reason": "signed after its intent was rolled back (recovery); not stored, not handed out"})
        return [Issued(p.serial, r["b_serial"], d, r["b_fp"], p.profile, self.name, p.linted)
                if r["b_serial"] in stored else
                StoreError(f"CA {self.name!r}: the recorded intent for serial {r['b_serial']} was rolled back "
                           "(recovery) before the certificate was stored; it was discarded")
                for (_, p, d), r in zip(signed, rows)]


@functools.lru_cache(maxsize=2)
def _store_statement(owned: bool = False):
    """Store one signed certificate, only where its row still holds the signed TBS (built once);
    ``owned``: with its enterprise and office too (:attr:`IssuingCA._owner`)."""
    from sqlalchemy import bindparam, update

    from unica.store import models as m

    t = m.Certificate.__table__
    values = dict(der=bindparam("b_der"), fingerprint_sha256=bindparam("b_fp"), status="valid",
                  updated_at=bindparam("b_now"), tbs_der=None)
    if owned:
        values.update(enterprise_id=bindparam("b_ent"), office=bindparam("b_office"))
    return (update(t).where((t.c.ca_id == bindparam("b_ca")) & (t.c.serial == bindparam("b_serial"))
                            & (t.c.status == "pending") & (t.c.tbs_der == bindparam("b_tbs"))).values(**values))


@contextlib.contextmanager
def _gc_paused(pause: bool):
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _Collision(Exception):
    """A serial number collided with one already recorded for this CA."""


def issue_operation(ca: str, profile: str, requests: list, requester: str | None, lint: bool):
    """The :class:`unica.auth.Operation` of issuing ``requests`` (CSRs, as given) under ``profile``:
    what the operator's card signs, and what an approved request runs again."""
    import base64

    from unica.auth import Operation

    from cryptography.hazmat.primitives.serialization import Encoding

    from unica.hsm.keytypes import spki_der

    def encoded(r) -> str:
        if isinstance(r, CSRRequest):  # a request built without a CSR: its key and subject
            if r.csr is None:
                spki = r.spki_der or spki_der(r.public_key)
                return "subject:" + r.subject.rfc4514_string() + ";spki:" + base64.b64encode(spki).decode()
            r = r.csr
        if hasattr(r, "public_bytes"):
            r = r.public_bytes(Encoding.DER)
        return base64.b64encode(bytes(r)).decode()

    params = {"profile": profile, "requester": requester, "lint": lint}
    if len(requests) == 1:
        params["csr"] = encoded(requests[0])
    else:
        params["csrs"] = [encoded(r) for r in requests]
    return Operation("cert.issue", ca=ca, params=params)
