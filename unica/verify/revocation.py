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
import time
import urllib.request
from typing import Callable, Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from unica.errors import FetchError, MalformedInput

from .report import RevocationEvidence

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


def now_utc() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


@dataclasses.dataclass(frozen=True)
class CertStatus:
    """The answer for one certificate at one time."""

    status: str  # "good", "revoked", "unknown" (no usable data)
    evidence: tuple[RevocationEvidence, ...]
    revocation_time: _dt.datetime | None = None
    #: the earliest nextUpdate of the evidence relied on (for caching decisions)
    fresh_until: _dt.datetime | None = None


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


def http_fetch(url: str, *, body: bytes | None = None, content_type: str | None = None,
               timeout: float, max_bytes: int) -> bytes:
    if not url.lower().startswith("http://") and not url.lower().startswith("https://"):
        raise FetchError(f"{url}: only http(s) URLs are fetched")
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    if content_type:
        req.add_header("Content-Type", content_type)
    # ``timeout`` bounds each socket wait; the deadline bounds the whole transfer, so a server
    # dripping one byte per (timeout - epsilon) cannot hold a fetch for max_bytes * timeout
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            chunks: list[bytes] = []
            n = 0
            while n <= max_bytes:
                if time.monotonic() > deadline:
                    raise FetchError(f"{url}: fetch took longer than {timeout:g} s")
                chunk = resp.read1(min(65536, max_bytes + 1 - n))
                if not chunk:
                    break
                chunks.append(chunk)
                n += len(chunk)
            data = b"".join(chunks)
    except OSError as e:
        raise FetchError(f"{url}: fetch failed: {e}") from None
    if len(data) > max_bytes:
        raise FetchError(f"{url}: response larger than {max_bytes} bytes")
    return data


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
    """Revocation data: supplied offline, and fetched (and cached) when the policy allows.

    ``crls`` / ``ocsp_responses``: DER or PEM bytes, or parsed cryptography objects.
    ``fetcher(url, body, content_type, timeout, max_bytes) -> bytes`` replaces HTTP.
    """

    def __init__(self, crls: Iterable = (), ocsp_responses: Iterable = (), *,
                 fetcher: Callable[..., bytes] | None = None, max_entries: int = 1024,
                 cache_seconds: float = 3600.0):
        self._crls: list[x509.CertificateRevocationList] = []
        for c in crls:
            self._crls.append(c if isinstance(c, x509.CertificateRevocationList) else _load_crl(bytes(c)))
        self._ocsp: list[ocsp.OCSPResponse] = []
        for r in ocsp_responses:
            self._ocsp.append(r if isinstance(r, ocsp.OCSPResponse) else _load_ocsp(bytes(r)))
        self._fetch = fetcher or (lambda url, body, ctype, timeout, max_bytes: http_fetch(
            url, body=body, content_type=ctype, timeout=timeout, max_bytes=max_bytes))
        self._cache = _TTLCache(max_entries)
        self._cache_seconds = _dt.timedelta(seconds=cache_seconds)
        # CRL signature checks are memoised: (crl fingerprint, issuer key) -> bool
        self._sig_ok = _TTLCache(max_entries)
        # revocation data embedded in signatures, parsed, by SHA-256 of its DER
        self._embedded = _TTLCache(max_entries)
        self._local = threading.local()

    #: bumped whenever offline data is added: results cached by a Verifier name the
    #: generation they were computed with, so new CRLs / OCSP responses take effect at once
    generation = 0

    def add_crl(self, crl) -> None:
        self._crls.append(crl if isinstance(crl, x509.CertificateRevocationList) else _load_crl(bytes(crl)))
        self.generation += 1

    def add_ocsp_response(self, resp) -> None:
        self._ocsp.append(resp if isinstance(resp, ocsp.OCSPResponse) else _load_ocsp(bytes(resp)))
        self.generation += 1

    # -- public entry point ------------------------------------------------------------

    def parse_embedded(self, crls: Iterable[bytes] = (), ocsps: Iterable[bytes] = ()) -> "Embedded":
        """Revocation data that came inside a signature (parsed once, memoised by hash)."""
        out_c, out_o, keys = [], [], []
        for kind, blobs, loader in (("crl", crls, _load_crl), ("ocsp", ocsps, _load_ocsp)):
            for b in blobs:
                h = hashlib.sha256(b).digest()
                keys.append(h)
                obj = self._embedded.get(h, now_utc())
                if obj is None:
                    try:
                        obj = loader(b)
                    except (MalformedInput, *_MALFORMED):
                        obj = False
                    self._embedded.put(h, obj, None)
                if obj is not False:
                    (out_c if kind == "crl" else out_o).append(obj)
        return Embedded(tuple(out_c), tuple(out_o), hashlib.sha256(b"".join(sorted(keys))).digest() if keys else b"")

    def check(self, cert: x509.Certificate, issuer: x509.Certificate, at: _dt.datetime,
              policy: RevocationPolicy, now: _dt.datetime, embedded: "Embedded | None" = None) -> CertStatus:
        """Status of ``cert`` (issued by ``issuer``) at time ``at``."""
        self._local.embedded = embedded  # per thread: read by the candidate generators
        evidence: list[RevocationEvidence] = []
        order = (self._check_ocsp, self._check_crls) if policy.prefer_ocsp else (
            self._check_crls, self._check_ocsp)
        for step in order:
            try:
                st = step(cert, issuer, at, policy, now, evidence)
            except _MALFORMED as e:  # damaged data (or extension of the certificate) read lazily
                evidence.append(RevocationEvidence(
                    certificate=cert.subject.rfc4514_string(), source="OCSP" if step == self._check_ocsp else "CRL",
                    origin="", status="invalid", message=f"malformed revocation data: {type(e).__name__}: {e}"))
                continue
            if st is not None:
                return st
        return CertStatus("unknown", tuple(evidence))

    # -- OCSP ------------------------------------------------------------------------------

    def _ocsp_candidates(self, cert, issuer, policy, now, evidence):
        emb = getattr(self._local, "embedded", None)
        for r in emb.ocsp if emb is not None else ():
            yield r, "embedded"
        for r in self._ocsp:
            yield r, "offline"
        if not policy.fetch:
            return
        try:
            aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        except x509.ExtensionNotFound:
            return
        urls = [d.access_location.value for d in aia
                if d.access_method == x509.AuthorityInformationAccessOID.OCSP
                and isinstance(d.access_location, x509.UniformResourceIdentifier)]
        for url in urls[:2]:
            key = ("ocsp", url, cert.serial_number, issuer.fingerprint(hashes.SHA256()))
            cached = self._cache.get(key, now)
            if cached is not None:
                yield cached, "cache"
                continue
            req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
            try:
                data = self._fetch(url, req.public_bytes(serialization.Encoding.DER),
                                   "application/ocsp-request", policy.timeout, policy.max_bytes)
                resp = _load_ocsp(data)
            except (FetchError, MalformedInput) as e:
                evidence.append(RevocationEvidence(
                    certificate=cert.subject.rfc4514_string(), source="OCSP",
                    origin=f"fetched: {url}", status="unavailable", message=str(e)))
                continue
            expires = now + self._cache_seconds
            if resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL:
                nu = resp.next_update_utc
                expires = min(expires, nu) if nu else min(expires, now + _dt.timedelta(minutes=5))
                self._cache.put(key, resp, expires)
            yield resp, f"fetched: {url}"

    def _check_ocsp(self, cert, issuer, at, policy, now, evidence) -> CertStatus | None:
        subject = cert.subject.rfc4514_string()
        for resp, origin in self._ocsp_candidates(cert, issuer, policy, now, evidence):
            if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
                if origin != "offline":
                    evidence.append(RevocationEvidence(
                        certificate=subject, source="OCSP", origin=origin, status="unavailable",
                        message=f"responder said {resp.response_status.name}"))
                continue
            try:
                for single in resp.responses:
                    if single.serial_number != cert.serial_number:
                        continue
                    h = single.hash_algorithm
                    name_hash = _hash(h, issuer.subject.public_bytes())
                    key_hash = _hash(h, _spki_key_bits(issuer))
                    if single.issuer_name_hash != name_hash or single.issuer_key_hash != key_hash:
                        continue
                    problem = self._ocsp_signer_problem(resp, issuer, now)
                    ev = dict(certificate=subject, source="OCSP", origin=origin,
                              produced_at=resp.produced_at_utc, this_update=single.this_update_utc,
                              next_update=single.next_update_utc,
                              issuer=_responder_name(resp))
                    if problem:
                        evidence.append(RevocationEvidence(status="invalid", message=problem, **ev))
                        continue
                    fresh = _freshness_problem(single.this_update_utc, single.next_update_utc, at, now)
                    if fresh:
                        evidence.append(RevocationEvidence(status="invalid", message=fresh, **ev))
                        continue
                    if single.certificate_status == ocsp.OCSPCertStatus.GOOD:
                        evidence.append(RevocationEvidence(status="good", **ev))
                        return CertStatus("good", tuple(evidence), fresh_until=single.next_update_utc)
                    if single.certificate_status == ocsp.OCSPCertStatus.REVOKED:
                        rt = single.revocation_time_utc
                        reason = single.revocation_reason.name if single.revocation_reason else None
                        if rt is not None and rt > at:
                            evidence.append(RevocationEvidence(
                                status="good", revocation_time=rt, revocation_reason=reason,
                                message="revoked after the validation time", **ev))
                            return CertStatus("good", tuple(evidence), revocation_time=rt,
                                              fresh_until=single.next_update_utc)
                        evidence.append(RevocationEvidence(
                            status="revoked", revocation_time=rt, revocation_reason=reason, **ev))
                        return CertStatus("revoked", tuple(evidence), revocation_time=rt)
                    evidence.append(RevocationEvidence(status="unknown", message="responder does not know the certificate", **ev))
            except _MALFORMED as e:
                # a damaged response (unknown algorithm, unparsable field or certificate)
                evidence.append(RevocationEvidence(certificate=subject, source="OCSP", origin=origin,
                                                   status="invalid", message=f"malformed OCSP response: {e}"))
        return None

    def _ocsp_signer_problem(self, resp: ocsp.OCSPResponse, issuer: x509.Certificate,
                             now: _dt.datetime) -> str | None:
        """None when the response is signed by the issuer or by a responder it delegated to."""
        tbs = resp.tbs_response_bytes
        halg = resp.signature_hash_algorithm
        pss = resp.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.RSASSA_PSS
        if _responder_matches(resp, issuer):
            if verify_signature(issuer.public_key(), resp.signature, tbs, halg, pss):
                return None
            return "OCSP response signature does not verify with the issuer's key"
        for rc in resp.certificates:
            if not _responder_matches(resp, rc):
                continue
            try:
                rc.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature):
                return "delegated OCSP responder certificate is not issued by the certificate's issuer"
            try:
                eku = rc.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except x509.ExtensionNotFound:
                eku = ()
            if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
                return "delegated OCSP responder certificate lacks the OCSPSigning EKU"
            produced = resp.produced_at_utc
            if not (rc.not_valid_before_utc <= produced <= rc.not_valid_after_utc):
                return "delegated OCSP responder certificate was not valid when the response was produced"
            if verify_signature(rc.public_key(), resp.signature, tbs, halg, pss):
                return None
            return "OCSP response signature does not verify with the delegated responder's key"
        return "OCSP response is signed by neither the issuer nor a delegated responder"

    # -- CRLs ------------------------------------------------------------------------------

    def _crl_candidates(self, cert, policy, now, evidence):
        emb = getattr(self._local, "embedded", None)
        for c in emb.crls if emb is not None else ():
            yield c, "embedded"
        for c in self._crls:
            yield c, "offline"
        if not policy.fetch:
            return
        try:
            cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        except x509.ExtensionNotFound:
            cdp = ()
        urls = []
        for dp in cdp:
            for gn in dp.full_name or ():
                if isinstance(gn, x509.UniformResourceIdentifier) and gn.value.lower().startswith("http"):
                    urls.append(gn.value)
        try:
            fresh = cert.extensions.get_extension_for_class(x509.FreshestCRL).value
            for dp in fresh:
                for gn in dp.full_name or ():
                    if isinstance(gn, x509.UniformResourceIdentifier) and gn.value.lower().startswith("http"):
                        urls.append(gn.value)
        except x509.ExtensionNotFound:
            pass
        for url in urls[:4]:
            key = ("crl", url)
            cached = self._cache.get(key, now)
            if cached is not None:
                yield cached, "cache"
                continue
            try:
                crl = _load_crl(self._fetch(url, None, None, policy.timeout, policy.max_bytes))
            except (FetchError, MalformedInput) as e:
                evidence.append(RevocationEvidence(
                    certificate=cert.subject.rfc4514_string(), source="CRL",
                    origin=f"fetched: {url}", status="unavailable", message=str(e)))
                continue
            nu = crl.next_update_utc
            expires = now + self._cache_seconds
            expires = min(expires, nu) if nu else min(expires, now + _dt.timedelta(minutes=5))
            self._cache.put(key, crl, expires)
            yield crl, f"fetched: {url}"

    def _crl_problem(self, crl: x509.CertificateRevocationList, cert, issuer) -> str | None:
        if crl.issuer != issuer.subject:
            return "not issued by the certificate's issuer"
        try:
            ku = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
            if not ku.crl_sign:
                return "issuer's key usage does not allow cRLSign"
        except x509.ExtensionNotFound:
            pass
        try:
            num = crl.extensions.get_extension_for_class(x509.CRLNumber)
            if num.critical:
                return "CRL number extension is marked critical"
        except x509.ExtensionNotFound:
            return "CRL has no CRL number (RFC 5280 5.2.3)"
        for ext in crl.extensions:
            if ext.critical and not isinstance(ext.value, (x509.DeltaCRLIndicator, x509.IssuingDistributionPoint)):
                return f"CRL has an unrecognised critical extension {ext.oid.dotted_string}"
        try:
            idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
        except x509.ExtensionNotFound:
            idp = None
        if idp is not None:
            is_ca = _is_ca(cert)
            if idp.indirect_crl:
                return "indirect CRLs are not supported"
            if idp.only_some_reasons:
                return "CRL covers only some reasons"
            if idp.only_contains_user_certs and is_ca:
                return "CRL covers end-entity certificates only"
            if idp.only_contains_ca_certs and not is_ca:
                return "CRL covers CA certificates only"
            if idp.only_contains_attribute_certs:
                return "CRL covers attribute certificates only"
            if idp.full_name:
                # a partitioned CRL applies only to certificates naming its distribution point
                # (RFC 5280 6.3.3 (b)(2)(i))
                try:
                    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
                    names = {gn for dp in cdp for gn in (dp.full_name or ())}
                except x509.ExtensionNotFound:
                    names = set()
                if not names & set(idp.full_name):
                    return "CRL is for another distribution point (partition) than the certificate's"
        key = (crl.fingerprint(hashes.SHA256()), issuer.fingerprint(hashes.SHA256()))
        ok = self._sig_ok.get(key, _dt.datetime.min.replace(tzinfo=_dt.timezone.utc))
        if ok is None:
            try:
                ok = crl.is_signature_valid(issuer.public_key())
            except (TypeError, ValueError):
                ok = False
            self._sig_ok.put(key, ok, None)
        if not ok:
            return "CRL signature does not verify with the issuer's key"
        return None

    def _check_crls(self, cert, issuer, at, policy, now, evidence) -> CertStatus | None:
        subject = cert.subject.rfc4514_string()
        base: tuple | None = None
        deltas = []
        for crl, origin in self._crl_candidates(cert, policy, now, evidence):
            if crl.issuer != issuer.subject:
                continue
            is_delta = _has_ext(crl, x509.DeltaCRLIndicator)
            ev = dict(certificate=subject, source="delta-CRL" if is_delta else "CRL", origin=origin,
                      this_update=crl.last_update_utc, next_update=crl.next_update_utc,
                      issuer=crl.issuer.rfc4514_string())
            problem = self._crl_problem(crl, cert, issuer) or _freshness_problem(
                crl.last_update_utc, crl.next_update_utc, at, now)
            if problem:
                evidence.append(RevocationEvidence(status="invalid", message=problem, **ev))
                continue
            if is_delta:
                deltas.append((crl, ev))
            elif base is None or _crl_order(crl) > _crl_order(base[0]):
                base = (crl, ev)  # the newest: highest CRL number, then latest thisUpdate
        if base is None:
            return None
        crl, ev = base
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        used = [(crl, ev, entry)]
        for d, dev in sorted(deltas, key=lambda x: x[0].last_update_utc):
            base_num = d.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value.crl_number
            if base_num > number:
                continue  # delta for a newer base than ours
            if d.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number <= number:
                continue  # older than our base: already folded into it
            dentry = d.get_revoked_certificate_by_serial_number(cert.serial_number)
            used.append((d, dev, dentry))
            if dentry is not None:
                entry = None if _reason(dentry) == "remove_from_crl" else dentry
        fresh_until = min((c.next_update_utc for c, _, _ in used if c.next_update_utc), default=None)
        if entry is not None:
            rt = entry.revocation_date_utc
            reason = _reason(entry)
            if rt > at:
                for c, e, _ in used:
                    evidence.append(RevocationEvidence(status="good", revocation_time=rt, revocation_reason=reason,
                                                       message="revoked after the validation time", **e))
                return CertStatus("good", tuple(evidence), revocation_time=rt, fresh_until=fresh_until)
            for c, e, _ in used:
                evidence.append(RevocationEvidence(status="revoked", revocation_time=rt,
                                                   revocation_reason=reason, **e))
            return CertStatus("revoked", tuple(evidence), revocation_time=rt)
        for c, e, _ in used:
            evidence.append(RevocationEvidence(status="good", **e))
        return CertStatus("good", tuple(evidence), fresh_until=fresh_until)


# --- helpers ---------------------------------------------------------------------------


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


def _crl_order(crl: x509.CertificateRevocationList) -> tuple:
    num = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    return (num, crl.last_update_utc)


def _hash(alg, data: bytes) -> bytes:
    h = hashes.Hash(alg)
    h.update(data)
    return h.finalize()


def _spki_key_bits(cert: x509.Certificate) -> bytes:
    from asn1crypto import keys

    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return keys.PublicKeyInfo.load(spki)["public_key"].contents[1:]


def _responder_matches(resp: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if resp.responder_name is not None:
        return resp.responder_name == cert.subject
    if resp.responder_key_hash is not None:
        return hashlib.sha1(_spki_key_bits(cert)).digest() == resp.responder_key_hash
    return False


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


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _reason(entry: x509.RevokedCertificate) -> str | None:
    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
    except x509.ExtensionNotFound:
        return None
