"""Revocation checking: CRLs (with delta CRLs) and OCSP (direct or delegated responders).

:class:`RevocationPolicy` is the stateless policy (frozen; presets ``OFF``, ``SOFT_FAIL``,
``HARD_FAIL``). :class:`RevocationSource` is the stateful part: CRLs and OCSP responses
supplied offline, plus a bounded cache of data fetched over HTTP (each entry kept no longer
than its nextUpdate, and no longer than ``cache_seconds``).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import hashlib
import threading
from typing import Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp

from unica.errors import MalformedInput

from ._sm2 import is_sm2_signed, sm2_signed_by
from .report import RevocationEvidence, rfc5280_reason_name

_DEFAULT_MAX_BYTES = 16 * 1024 * 1024
#: what cryptography raises, lazily, on a damaged CRL / OCSP response / certificate field
#: (KeyError: a name attribute whose string has an unknown ASN.1 type)
_MALFORMED = (ValueError, KeyError, TypeError, UnsupportedAlgorithm, x509.ExtensionNotFound, x509.DuplicateExtension,
              x509.UnsupportedGeneralNameType)


@dataclasses.dataclass(frozen=True)
class RevocationPolicy:
    """How revocation is checked.

    ``mode``: ``"off"`` (no check), ``"soft-fail"`` (use whatever valid data can be had; a
    certificate with no usable data passes, with a message), ``"hard-fail"`` (each
    certificate of the path, except the trust anchor, needs a valid CRL or OCSP answer;
    otherwise the result is INDETERMINATE/TRY_LATER).
    ``fetch``: fetch CRLs (CRL distribution points) and OCSP (AIA) over HTTP.
    ``check_ca``: also check the intermediate CA certificates, not only the leaf.
    """

    mode: str = "soft-fail"
    fetch: bool = True
    prefer_ocsp: bool = True
    check_ca: bool = True
    timeout: float = 5.0
    max_bytes: int = _DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if self.mode not in ("off", "soft-fail", "hard-fail"):
            raise ValueError(f"revocation mode {self.mode!r} is not off, soft-fail or hard-fail")
        if self.timeout <= 0 or self.max_bytes <= 0:
            raise ValueError("revocation fetch timeout and max_bytes must be positive")


OFF = RevocationPolicy(mode="off", fetch=False)
SOFT_FAIL = RevocationPolicy(mode="soft-fail")
HARD_FAIL = RevocationPolicy(mode="hard-fail")
OFFLINE_HARD_FAIL = RevocationPolicy(mode="hard-fail", fetch=False)


def policy_named(name: str) -> RevocationPolicy:
    try:
        return {"off": OFF, "soft-fail": SOFT_FAIL, "hard-fail": HARD_FAIL}[name]
    except KeyError:
        raise ValueError(f"revocation policy {name!r} is not off, soft-fail or hard-fail") from None


@dataclasses.dataclass(frozen=True)
class Embedded:
    """Revocation data carried inside one signature; ``key`` identifies it for caching."""

    crls: tuple = ()
    ocsp: tuple = ()
    key: bytes = b""
    #: the same data in asn1crypto form, for the authority
    asn1_crls: tuple = ()
    asn1_ocsp: tuple = ()


def now_utc() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


# --- signatures --------------------------------------------------------------------


def verify_signature(key, signature: bytes, data: bytes, hash_alg, pss: bool = False) -> bool:
    """Verify a signature with a cryptography public key; False when it does not verify."""
    try:
        if isinstance(key, rsa.RSAPublicKey):
            pad = (
                padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=padding.PSS.AUTO)
                if pss
                else padding.PKCS1v15()
            )
            key.verify(signature, data, pad, hash_alg)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hash_alg))
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


# --- fetching and caching ------------------------------------------------------------


class _TTLCache:
    """A small LRU whose entries also expire at a given time."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._d: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, now: _dt.datetime):
        with self._lock:
            item = self._d.get(key)
            if item is None:
                return None
            value, expires = item
            if expires is not None and now > expires:
                del self._d[key]
                return None
            self._d.move_to_end(key)
            return value

    def put(self, key, value, expires: _dt.datetime | None) -> None:
        with self._lock:
            self._d[key] = (value, expires)
            self._d.move_to_end(key)
            while len(self._d) > self.max_entries:
                self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)


def _load_crl(data: bytes) -> x509.CertificateRevocationList:
    try:
        crl = x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
        crl.issuer  # parsed lazily: an issuer with a bad string type raises KeyError
        return crl
    except (ValueError, KeyError, TypeError, x509.InvalidVersion) as e:
        raise MalformedInput(f"not a PEM or DER CRL: {type(e).__name__}: {e}") from None


def _load_ocsp(data: bytes) -> ocsp.OCSPResponse:
    try:
        return ocsp.load_der_ocsp_response(data)
    except ValueError as e:
        raise MalformedInput(f"not a DER OCSP response: {e}") from None


class RevocationSource:
    """Revocation data supplied offline or carried in signatures, in the forms both engines
    read (cryptography objects for the fast path, asn1crypto for the authority), with the
    per-CRL facts the fast path needs memoised.

    ``crls`` / ``ocsp_responses``: DER or PEM bytes, or parsed cryptography objects.
    """

    def __init__(self, crls: Iterable = (), ocsp_responses: Iterable = (), *, max_entries: int = 1024):
        self._crls: list[x509.CertificateRevocationList] = []
        self._ocsp: list[ocsp.OCSPResponse] = []
        self._asn1_crls: list = []
        self._asn1_ocsp: list = []
        for c in crls:
            self.add_crl(c)
        for r in ocsp_responses:
            self.add_ocsp_response(r)
        self.generation = 0
        # (crl fingerprint, issuer key) -> signature verifies; crl fingerprint -> entries plain
        self._sig_ok = _TTLCache(max_entries)
        self._plain = _TTLCache(max_entries)
        # revocation data embedded in signatures, parsed, by SHA-256 of its DER
        self._embedded = _TTLCache(max_entries)

    #: bumped whenever offline data is added: results cached by a Verifier name the
    #: generation they were computed with, so new CRLs / OCSP responses take effect at once
    generation = 0

    def add_crl(self, crl) -> None:
        from asn1crypto import crl as acrl

        c = crl if isinstance(crl, x509.CertificateRevocationList) else _load_crl(bytes(crl))
        self._crls.append(c)
        self._asn1_crls.append(acrl.CertificateList.load(c.public_bytes(serialization.Encoding.DER)))
        self.generation += 1

    def add_ocsp_response(self, resp) -> None:
        from asn1crypto import ocsp as aocsp

        r = resp if isinstance(resp, ocsp.OCSPResponse) else _load_ocsp(bytes(resp))
        self._ocsp.append(r)
        self._asn1_ocsp.append(aocsp.OCSPResponse.load(r.public_bytes(serialization.Encoding.DER)))
        self.generation += 1

    def parse_embedded(self, crls: Iterable[bytes] = (), ocsps: Iterable[bytes] = ()) -> "Embedded":
        """Revocation data that came inside a signature (parsed once, memoised by hash)."""
        from asn1crypto import crl as acrl, ocsp as aocsp

        out: dict[str, list] = {"crl": [], "ocsp": [], "acrl": [], "aocsp": []}
        keys = []
        for kind, blobs, loader, aload in (("crl", crls, _load_crl, acrl.CertificateList.load),
                                           ("ocsp", ocsps, _load_ocsp, aocsp.OCSPResponse.load)):
            for b in blobs:
                h = hashlib.sha256(b).digest()
                keys.append(h)
                obj = self._embedded.get(h, now_utc())
                if obj is None:
                    try:
                        obj = (loader(b), aload(bytes(b)))
                    except (MalformedInput, *_MALFORMED):
                        obj = False
                    self._embedded.put(h, obj, None)
                if obj is not False:
                    out[kind].append(obj[0])
                    out["a" + kind].append(obj[1])
        return Embedded(tuple(out["crl"]), tuple(out["ocsp"]),
                        hashlib.sha256(b"".join(sorted(keys))).digest() if keys else b"",
                        tuple(out["acrl"]), tuple(out["aocsp"]))

    # -- for the fast path ---------------------------------------------------------------------

    def crl_candidates(self, embedded: Embedded | None = None) -> list[tuple[x509.CertificateRevocationList, str]]:
        """The CRLs at hand that may be used (see :meth:`usable`)."""
        out = [(c, "embedded") for c in (embedded.crls if embedded is not None else ())]
        out += [(c, "offline") for c in self._crls]
        return [(c, o) for c, o in out if self.usable(c)]

    def ocsp_serials(self, embedded: Embedded | None = None) -> frozenset[int]:
        """Serials that OCSP responses at hand speak about."""
        out = set()
        for r in [*(embedded.ocsp if embedded is not None else ()), *self._ocsp]:
            try:
                if r.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL:
                    out.update(s.serial_number for s in r.responses)
            except _MALFORMED:
                continue
        return frozenset(out)

    def sig_ok(self, crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
        key = (crl.fingerprint(hashes.SHA256()), issuer.fingerprint(hashes.SHA256()))
        ok = self._sig_ok.get(key, _EPOCH)
        if ok is None:
            try:
                if is_sm2_signed(crl.signature_algorithm_oid):
                    ok = sm2_signed_by(issuer, crl.signature, crl.tbs_certlist_bytes)
                else:
                    ok = crl.is_signature_valid(issuer.public_key())
            except (TypeError, ValueError, UnsupportedAlgorithm):
                ok = False
            self._sig_ok.put(key, ok, None)
        return ok

    def entries_plain(self, crl: x509.CertificateRevocationList) -> bool:
        from .fastpath import entries_plain

        key = crl.fingerprint(hashes.SHA256())
        ok = self._plain.get(key, _EPOCH)
        if ok is None:
            ok = entries_plain(crl)
            self._plain.put(key, ok, None)
        return ok

    # -- for the authority ---------------------------------------------------------------------

    def asn1_revinfo(self, embedded: Embedded | None = None) -> tuple[list, list]:
        """CRLs and OCSP responses for the authority, without the CRLs RFC 5280 5.3 forbids
        using (an entry with an unrecognised critical extension; pyhanko-certvalidator 0.33
        only looks at the entry of the certificate it checks)."""
        pairs = list(zip(embedded.crls, embedded.asn1_crls)) if embedded is not None else []
        pairs += list(zip(self._crls, self._asn1_crls))
        crls = [a for c, a in pairs if self.usable(c)]
        ocsps = list(embedded.asn1_ocsp) if embedded is not None else []
        return crls, ocsps + self._asn1_ocsp

    def usable(self, crl: x509.CertificateRevocationList) -> bool:
        """May the CRL be used at all? Not when it lacks a CRL number or marks it critical
        (RFC 5280 5.2.3: a conforming CRL has it, non-critical), nor when it has an
        unrecognised critical extension (5.2) or an entry has one (5.3): pyhanko-certvalidator
        0.33 uses a CRL with an unknown critical extension, and checks entry extensions only on
        the entry of the certificate at hand."""
        key = (b"usable", crl.fingerprint(hashes.SHA256()))
        ok = self._plain.get(key, _EPOCH)
        if ok is None:
            try:
                num = crl.extensions.get_extension_for_class(x509.CRLNumber)
                ok = not num.critical and not any(
                    x.critical and isinstance(x.value, x509.UnrecognizedExtension) for x in crl.extensions
                ) and not any(x.critical and x.oid not in _KNOWN_ENTRY_EXTS for e in crl for x in e.extensions)
            except (x509.ExtensionNotFound, *_MALFORMED):
                ok = False
            self._plain.put(key, ok, None)
        return ok

    def _signed_for(self, crl, issuer, others) -> bool:
        """Signed by the certificate's issuer, or by a certificate at hand named as the CRL's
        issuer (a separate CRL signer, 6.3.3 (f); the authority validated its path)."""
        from .certificate import normalised

        if self.sig_ok(crl, issuer):
            return True
        return any(normalised(o.subject) == normalised(crl.issuer) and self.sig_ok(crl, o) for o in others)

    def rfc_refusal(self, chain, at, embedded: Embedded | None = None, *, require_scope: frozenset[int] = frozenset(),
                    others=()):
        """Refusal-only RFC 5280 6.3.3 checks on a path the authority accepted, for the rules
        pyhanko-certvalidator 0.33 relaxes (each found by tests/verify/test_differential.py):

        - a delta CRL at hand, signed by the issuer's key, lists the certificate as revoked by
          ``at``: it applies although only the certificate names it (6.3.3 (a)(1)(i); pyhanko
          takes deltas named by the base CRL only) and although it is past its nextUpdate (a
          revocation, once announced, is not undone by staleness; pyhanko drops the delta);
        - the newest complete CRL of the issuer lists the certificate (revoked or on hold) by
          ``at``, and no delta CRL for that base (5.2.4: BaseCRLNumber <= its number) removes
          it (pyhanko applies a delta to an older base);
        - for the certificates in ``require_scope`` (hard-fail, nothing fetched, no OCSP answer
          at hand), some complete CRL at hand is in scope (6.3.3 (b)): issued under the
          certificate's issuer name, or an indirect CRL of a cRLIssuer its distribution point
          names (pyhanko accepts a CRL of any cRLSign certificate the CA issued); its issuing
          distribution point names one of the certificate's distribution points and covers its
          kind; current at ``at``; signed by the issuer or by a CRL signer at hand.

        Returns (index in ``chain``, "revoked" | "revoked by delta" | "no-scope", revocation time,
        reason) or None."""
        from .certificate import normalised

        crls = [c for c, _ in self.crl_candidates(embedded)]
        deltas = [c for c in crls if _has_ext(c, x509.DeltaCRLIndicator)]
        fulls = [c for c in crls if not _has_ext(c, x509.DeltaCRLIndicator)]
        for i in range(len(chain) - 1):
            cert, issuer = chain[i], chain[i + 1]
            want = normalised(cert.issuer)
            try:
                for d in deltas:
                    if normalised(d.issuer) != want or not self.sig_ok(d, issuer):
                        continue
                    entry = d.get_revoked_certificate_by_serial_number(cert.serial_number)
                    if entry is not None and entry.revocation_date_utc <= at and _reason(entry) != "removeFromCRL":
                        return i, "revoked by delta", entry.revocation_date_utc, _reason(entry)
                mine = [c for c in fulls if normalised(c.issuer) == want and self.sig_ok(c, issuer)]
                for listing in mine:
                    entry = listing.get_revoked_certificate_by_serial_number(cert.serial_number)
                    if entry is None or entry.revocation_date_utc > at:
                        continue
                    released = any(_same_scope(c, listing) and _crl_number(c) > _crl_number(listing)
                                   and c.get_revoked_certificate_by_serial_number(cert.serial_number) is None
                                   for c in mine) or any(_removes(d, listing, cert, issuer, want, self) for d in deltas)
                    if not released:
                        return i, "revoked", entry.revocation_date_utc, _reason(entry)
                if i in require_scope:
                    covered: set = set()
                    for c in fulls:
                        # a CRL signed by the certificate's own key cannot vouch for it
                        if _current(c, at) and self._signed_for(c, issuer, [o for o in others if o != cert]):
                            covered |= _in_scope(c, cert, want)
                    if covered != _ALL_REASONS:
                        return i, "no-scope", None, None
            except _MALFORMED:
                return i, "no-scope", None, None
        return None

    def evidence_for(self, chain, at, now, embedded, policy) -> tuple[list[RevocationEvidence], _dt.datetime | None]:
        """What the report names as the revocation data of an accepted path: for each
        certificate below the anchor, the CRLs of its issuer and the OCSP answers about it
        that were at hand and current at ``at``. The authority decided with them (and with
        what it fetched); the earliest nextUpdate bounds how long the result is reused."""
        if policy.mode == "off":
            return [], None
        out: list[RevocationEvidence] = []
        fresh: _dt.datetime | None = None
        crls = self.crl_candidates(embedded)
        resps = [(r, "embedded") for r in (embedded.ocsp if embedded is not None else ())] + \
            [(r, "offline") for r in self._ocsp]
        for i in range(len(chain) - 1):
            cert, issuer = chain[i], chain[i + 1]
            subject = cert.subject.rfc4514_string()
            for crl, origin in crls:
                try:
                    if crl.issuer != cert.issuer or _freshness_problem(crl.last_update_utc, crl.next_update_utc, at, now):
                        continue
                    delta = _has_ext(crl, x509.DeltaCRLIndicator)
                    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
                    extra = {}
                    if entry is not None:
                        extra = dict(revocation_time=entry.revocation_date_utc, revocation_reason=_reason(entry),
                                     message="listed with a revocation after the validation time")
                    out.append(RevocationEvidence(
                        certificate=subject, source="delta-CRL" if delta else "CRL", origin=origin, status="good",
                        this_update=crl.last_update_utc, next_update=crl.next_update_utc,
                        issuer=crl.issuer.rfc4514_string(), **extra))
                    if crl.next_update_utc is not None:
                        fresh = crl.next_update_utc if fresh is None else min(fresh, crl.next_update_utc)
                except _MALFORMED:
                    continue
            for resp, origin in resps:
                try:
                    if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
                        continue
                    for single in resp.responses:
                        if single.serial_number != cert.serial_number or \
                                single.issuer_name_hash != _cert_id_hash(single, issuer.subject.public_bytes()):
                            continue
                        if _freshness_problem(single.this_update_utc, single.next_update_utc, at, now):
                            continue
                        extra = {}
                        if single.certificate_status == ocsp.OCSPCertStatus.REVOKED:
                            extra = dict(revocation_time=single.revocation_time_utc,
                                         revocation_reason=_reason_name(single.revocation_reason),
                                         message="revoked after the validation time")
                        elif single.certificate_status != ocsp.OCSPCertStatus.GOOD:
                            continue
                        out.append(RevocationEvidence(
                            certificate=subject, source="OCSP", origin=origin, status="good",
                            produced_at=resp.produced_at_utc, this_update=single.this_update_utc,
                            next_update=single.next_update_utc, issuer=_responder_name(resp), **extra))
                        nu = single.next_update_utc
                        if nu is not None:
                            fresh = nu if fresh is None else min(fresh, nu)
                except _MALFORMED:
                    continue
        return out, fresh


_EPOCH = _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)
#: CRL entry extensions RFC 5280 5.3 defines
_KNOWN_ENTRY_EXTS = frozenset({
    x509.CRLEntryExtensionOID.CRL_REASON, x509.CRLEntryExtensionOID.INVALIDITY_DATE,
    x509.CRLEntryExtensionOID.CERTIFICATE_ISSUER, x509.ObjectIdentifier("2.5.29.23"),  # holdInstructionCode
})


# --- helpers ---------------------------------------------------------------------------


def _crl_number(crl) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return -1


def _removes(delta, base, cert, issuer, want, source) -> bool:
    """Does ``delta`` apply to ``base`` (5.2.4) and take ``cert`` off it (removeFromCRL)?"""
    from .certificate import normalised

    if normalised(delta.issuer) != want or not source.sig_ok(delta, issuer):
        return False
    base_num = delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value.crl_number
    if not (base_num <= _crl_number(base) < _crl_number(delta)):
        return False
    entry = delta.get_revoked_certificate_by_serial_number(cert.serial_number)
    return entry is not None and _reason(entry) == "removeFromCRL"


def _idp(crl):
    try:
        return crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    except x509.ExtensionNotFound:
        return None


def _same_scope(a, b) -> bool:
    return _idp(a) == _idp(b)


def _current(crl, at) -> bool:
    nu = crl.next_update_utc
    return nu is not None and nu >= at - _dt.timedelta(seconds=1)


def _dp_names(names, relative, crl_issuer: x509.Name) -> set:
    """Full names of a distribution point (a relative name is appended to the CRL issuer)."""
    from .certificate import normalised

    out = set()
    for n in names or ():
        out.add(("dn", normalised(n.value)) if isinstance(n, x509.DirectoryName) else ("gn", n))
    if relative is not None:
        out.add(("dn", normalised(x509.Name([*crl_issuer.rdns, relative]))))
    return out


_ALL_REASONS = frozenset(r for r in x509.ReasonFlags
                         if r not in (x509.ReasonFlags.unspecified, x509.ReasonFlags.remove_from_crl))


def _in_scope(crl, cert, want) -> frozenset:
    """The revocation reasons (6.3.3 (d)) for which the CRL speaks for the certificate; empty
    when it is out of scope. In scope (6.3.3 (b)): issued under the certificate's issuer name
    through a distribution point naming no cRLIssuer (or the certificate has none), or an
    indirect CRL of a cRLIssuer a distribution point names; its issuing distribution point, if it
    names one, names that distribution point; and it covers the certificate's kind."""
    from .certificate import normalised

    try:
        cdp = list(cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value)
    except x509.ExtensionNotFound:
        cdp = []
    idp = _idp(crl)
    if idp is not None:
        if idp.only_contains_attribute_certs:
            return frozenset()
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if (idp.only_contains_user_certs and is_ca) or (idp.only_contains_ca_certs and not is_ca):
            return frozenset()
    reasons = _ALL_REASONS if idp is None or idp.only_some_reasons is None else frozenset(idp.only_some_reasons)
    idp_names = _dp_names(idp.full_name, idp.relative_name, crl.issuer) if idp is not None else set()
    crl_name = normalised(crl.issuer)
    if not cdp:
        return reasons if crl_name == want and (not idp_names or ("dn", want) in idp_names) else frozenset()
    for dp in cdp:
        issuers = [n for n in (dp.crl_issuer or ()) if isinstance(n, x509.DirectoryName)]
        if issuers:
            if not (idp is not None and idp.indirect_crl and any(normalised(n.value) == crl_name for n in issuers)):
                continue
        elif crl_name != want:
            continue
        if idp_names:
            names = _dp_names(dp.full_name, dp.relative_name, crl.issuer) if (dp.full_name or dp.relative_name) \
                else {("dn", normalised(n.value)) for n in issuers}
            if not names & idp_names:
                continue
        return reasons & (frozenset(dp.reasons) if dp.reasons else _ALL_REASONS)
    return frozenset()


def _freshness_problem(this_update, next_update, at, now) -> str | None:
    """Revocation data speaks for ``at`` if issued after it, or current at that time."""
    slack = _dt.timedelta(minutes=5)
    if this_update > now + slack:
        return f"issued in the future ({this_update:%Y-%m-%dT%H:%M:%SZ})"
    if this_update >= at:
        return None
    if next_update is not None and next_update < at:
        return (f"stale: nextUpdate {next_update:%Y-%m-%dT%H:%M:%SZ} is before the validation "
                f"time {at:%Y-%m-%dT%H:%M:%SZ}")
    return None


def _cert_id_hash(single, data: bytes) -> bytes | None:
    """``data`` hashed with the CertID's hash algorithm: cryptography's, or SM3 (GM/T 0004), which
    cryptography does not know (its ``hash_algorithm`` raises; an SM3 digest of the issuer name
    is then compared, and nothing else can match it)."""
    try:
        return _hash(single.hash_algorithm, data)
    except UnsupportedAlgorithm:
        import hashlib

        return hashlib.new("sm3", data).digest()


def _hash(alg, data: bytes) -> bytes:
    h = hashes.Hash(alg)
    h.update(data)
    return h.finalize()


def _responder_name(resp: ocsp.OCSPResponse) -> str | None:
    if resp.responder_name is not None:
        return resp.responder_name.rfc4514_string()
    if resp.responder_key_hash is not None:
        return "keyHash:" + resp.responder_key_hash.hex()
    return None


def _has_ext(obj, cls) -> bool:
    try:
        obj.extensions.get_extension_for_class(cls)
        return True
    except x509.ExtensionNotFound:
        return False


def _reason(entry: x509.RevokedCertificate) -> str | None:
    try:
        return _reason_name(entry.extensions.get_extension_for_class(x509.CRLReason).value.reason)
    except x509.ExtensionNotFound:
        return None


def _reason_name(flag) -> str | None:
    """RFC 5280 name of a cryptography ReasonFlags (``keyCompromise``)."""
    return rfc5280_reason_name(flag)
