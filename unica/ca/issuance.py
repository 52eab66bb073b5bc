"""Issuance with the database: refuse early, record the intent, sign once, store.

:class:`IssuingCA` binds a store, one CA (its engine view and its loaded key) and runs
:meth:`IssuingCA.issue` for each request:

1. parse and check the request, build and lint a throwaway-signed copy (:func:`engine.prepare`);
   a refusal is written to the audit log ("certificate.refused") and raised;
2. transaction 1: a ``pending`` certificate row holding the exact TBSCertificate and the
   serial (a collision on the per-issuer unique serial is retried with a new serial);
3. the one real signature over that TBSCertificate;
4. transaction 2: the certificate DER, its fingerprint, status ``valid`` and the audit entry.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from unica.ca import engine
from unica.ca.names import name_text
from unica.ca.records import get_ca_row, issuer_from_row
from unica.ca.request import CSRRequest, parse_csr
from unica.errors import PolicyViolation, StoreError, UnicaError
from unica.policies import Profile, get_profile

MAX_SERIAL_TRIES = 5


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

    @property
    def issuer(self) -> engine.Issuer:
        if self._unusable is not None:
            raise self._unusable
        return self._issuer

    @property
    def key(self):
        if self._key is None:
            from unica.hsm import load_key

            self._key = self._key_loader() if self._key_loader else load_key(self.key_uri)
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
              lint: bool = True, source: str = "CSR", now: dt.datetime | None = None) -> Issued:
        """Issue one certificate for ``csr`` under ``profile`` (see the module docstring)."""
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
        cert_id, prepared = self._record_intent(prepared, prof, issuer, request, requester, lint, now)
        try:
            cert_der = engine.sign_prepared(prepared, key, issuer.public_key)
        except BaseException as e:
            self._mark_failed(cert_id, prepared, e)
            raise
        return self._store_signed(cert_id, prepared, cert_der, requester)

    # --- the two transactions --------------------------------------------------------

    def _record_intent(self, prepared, prof, issuer, request, requester, lint, now):
        from sqlalchemy.exc import IntegrityError

        from unica.store import models as m

        for attempt in range(MAX_SERIAL_TRIES):
            try:
                with self.store.write() as s:
                    row = m.Certificate(
                        ca_id=self.ca_id, serial=m.serial_hex(prepared.serial), status="pending",
                        subject_text=name_text(prepared.subject), subject_der=prepared.subject.public_bytes(),
                        sans=list(prepared.sans), not_before=prepared.not_before, not_after=prepared.not_after,
                        profile=prepared.profile, is_ca=prepared.is_ca, tbs_der=prepared.tbs_der,
                        spki_sha256=prepared.spki_sha256, requester=requester)
                    s.add(row)
                    s.flush()
                    return row.id, prepared
            except IntegrityError:
                if attempt == MAX_SERIAL_TRIES - 1:
                    raise StoreError(f"CA {self.name!r}: {MAX_SERIAL_TRIES} serial collisions in a row") from None
                # a serial collision: same contents, new serial (re-linted: the serial is in the TBS)
                prepared = engine.prepare(issuer, prof, request, now=now, lint=lint)
        raise AssertionError("unreachable")  # pragma: no cover

    def _mark_failed(self, cert_id: int, prepared, error: BaseException) -> None:
        from unica.store import models as m

        try:
            with self.store.write() as s:
                row = s.get(m.Certificate, cert_id)
                row.status = "failed"
                self.store.audit(s, "certificate.signing_failed", ca=self.name, target=row.serial,
                                 details={"error": type(error).__name__, "reason": " ".join(str(error).split())})
        except UnicaError:
            pass

    def _store_signed(self, cert_id: int, prepared, cert_der: bytes, requester) -> Issued:
        from unica.store import models as m

        fp = engine.fingerprint(cert_der)
        with self.store.write() as s:
            row = s.get(m.Certificate, cert_id)
            row.der = cert_der
            row.fingerprint_sha256 = fp
            row.status = "valid"
            details = {"profile": prepared.profile, "fingerprint_sha256": fp, "requester": requester,
                       "subject": row.subject_text, "lint": "pkilint clean" if prepared.linted else
                       "SKIPPED (--no-lint, bulk re-issuance)"}
            if prepared.ignored_extensions:
                details["ignored_requested_extensions"] = list(prepared.ignored_extensions)
            self.store.audit(s, "certificate.issued", ca=self.name, target=row.serial, details=details)
        return Issued(prepared.serial, m.serial_hex(prepared.serial), cert_der, fp, prepared.profile, self.name,
                      prepared.linted)
