"""The :class:`Verifier`: trust anchors, revocation data and caches held across calls.

A stream of signatures from the same CA costs little more than one signature check each:
validated paths are cached per (leaf, intermediates, use, time bucket) for as long as every
certificate of the path is within its validity and the revocation data relied on is fresh
(its nextUpdate), revocation data itself is cached until its nextUpdate, and parsed
certificates are memoised by their DER bytes. Every cache is bounded. Only passing results
are cached.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import hashlib
import threading
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from .authority import PathPolicy
from .certificate import TrustStore, validate_path
from .report import ValidationReport
from .revocation import HARD_FAIL, RevocationPolicy, RevocationSource
from .usage import Usage, resolve_usage
from ._util import as_utc, load_certificates, signer_identity, utcnow


class _LRU:
    def __init__(self, size: int):
        self.size = size
        self._d: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key, value) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            if len(self._d) > self.size:
                self._d.popitem(last=False)

    def pop(self, key) -> None:
        with self._lock:
            self._d.pop(key, None)

    def __len__(self) -> int:
        return len(self._d)


class Verifier:
    """Holds trust and caches; thread-safe. All ``verify_*`` functions take one of these.

    ``trust``: trust anchors (certificates, PEM/DER bytes or paths).
    ``intermediates``: extra CA certificates available for path building.
    ``revocation``: a :class:`RevocationPolicy`. The default, ``HARD_FAIL``, is EN 319 102-1's:
    every certificate below the trust anchor needs current revocation data, else the result
    is INDETERMINATE/TRY_LATER. ``SOFT_FAIL`` is an explicit opt-in, named in every report.
    ``crls`` / ``ocsp_responses``: revocation data supplied offline.
    ``policies``, ``require_explicit_policy``, ``inhibit_policy_mapping``, ``inhibit_any_policy``:
    the RFC 5280 6.1.1 inputs (c)-(f); ``policies`` is the user-initial-policy-set (dotted
    OIDs; None means anyPolicy). ``strict``: also refuse paths whose CA certificates break the
    RFC 5280 section 4 profile (see :func:`unica.verify.certificate.structural_problems`).
    Every call may override these.
    ``fetcher``: replaces HTTP (``fetcher(url, body, content_type, timeout, max_bytes) -> bytes``);
    ``fetch_limits``: a :class:`unica.verify.fetch.FetchLimits` (sizes, time, count, caIssuers
    depth); by default from the revocation policy's timeout and max_bytes.
    ``time_bucket``: seconds; a cached path is reused only within the same bucket.
    """

    def __init__(self, trust, *, intermediates=(), revocation: RevocationPolicy = HARD_FAIL,
                 crls: Iterable = (), ocsp_responses: Iterable = (), fetcher=None,
                 usage: str | Usage = "document-signing", max_chain_depth: int | None = None,
                 policies: Iterable[str] | None = None, require_explicit_policy: bool = False,
                 inhibit_policy_mapping: bool = False, inhibit_any_policy: bool = False, strict: bool = False,
                 cache_size: int = 4096, time_bucket: int = 300, revocation_source: RevocationSource | None = None,
                 fetch_limits=None):
        if not isinstance(revocation, RevocationPolicy):
            raise TypeError("revocation must be a RevocationPolicy")
        anchors = load_certificates(trust, "trust anchor")
        self.trust = TrustStore(anchors)
        self.intermediates: tuple[x509.Certificate, ...] = tuple(load_certificates(intermediates, "intermediate"))
        self.revocation = revocation
        self.source = revocation_source or RevocationSource(crls, ocsp_responses)
        self.usage = resolve_usage(usage)
        self.max_chain_depth = max_chain_depth
        self.path_policy = path_policy(policies, require_explicit_policy, inhibit_policy_mapping,
                                       inhibit_any_policy, strict)
        self.time_bucket = max(1, int(time_bucket))
        self._paths = _LRU(cache_size)
        self._certs = _LRU(cache_size)
        self._asn1 = _LRU(cache_size)
        from .fetch import FetchCache

        self._fetcher = fetcher
        self._fetch_limits = fetch_limits
        self._fetch_cache = FetchCache()

    # -- parsed-certificate memo ------------------------------------------------------------

    def certificate_from_der(self, der: bytes) -> x509.Certificate:
        return self.cert_entry(der)[0]

    def cert_entry(self, der: bytes):
        """(certificate, public key, signer identity, SHA-256 of the DER, issuer name DER) for
        DER bytes, memoised."""
        key = hashlib.sha256(der).digest()
        e = self._certs.get(key)
        if e is None:
            try:
                c = x509.load_der_x509_certificate(der)
                c.subject, c.issuer  # parsed lazily: a name with a bad string type raises KeyError
            except (x509.InvalidVersion, KeyError, TypeError) as e:
                raise ValueError(f"unreadable certificate: {type(e).__name__}: {e}") from None
            try:
                pub = c.public_key()
            except (ValueError, TypeError, UnsupportedAlgorithm):
                pub = None
            e = (c, pub, signer_identity(c), key, c.issuer.public_bytes())
            self._certs.put(key, e)
        return e

    def asn1_certificate(self, cert: x509.Certificate):
        """The asn1crypto form of a certificate, memoised (pyhanko-certvalidator caches its
        digests and parsed fields on the object)."""
        from asn1crypto import x509 as ax

        der = cert.public_bytes(_DER)
        key = hashlib.sha256(der).digest()
        a = self._asn1.get(key)
        if a is None:
            a = ax.Certificate.load(der)
            self._asn1.put(key, a)
        return a

    def _fetchers(self, pol: RevocationPolicy):
        """pyhanko-certvalidator fetchers for one validation, over unica's bounded HTTP client
        (caIssuers, CRLs, OCSP), sharing the Verifier's cache; None when fetching is off."""
        if not pol.fetch:
            return None
        from .fetch import FetchLimits, make_fetchers

        limits = self._fetch_limits or FetchLimits(
            timeout=pol.timeout, max_crl_bytes=pol.max_bytes, max_ocsp_bytes=min(pol.max_bytes, 1 << 20),
            max_cert_bytes=min(pol.max_bytes, 1 << 20))
        return make_fetchers(limits, self._fetch_cache, fetcher=self._fetcher)

    # -- certificate validation -------------------------------------------------------------

    def validate_certificate(self, cert, *, intermediates: Sequence = (), at: _dt.datetime | None = None,
                             usage: str | Usage | None = None, server_name: str | None = None,
                             time_is_proven: bool | None = None, claimed_time: _dt.datetime | None = None,
                             policies: Iterable[str] | None = None, require_explicit_policy: bool | None = None,
                             inhibit_policy_mapping: bool | None = None, inhibit_any_policy: bool | None = None,
                             strict: bool | None = None, revocation: RevocationPolicy | None = None,
                             _fingerprints: tuple | None = None, embedded=None) -> ValidationReport:
        """Validate one certificate at ``at`` (default now). Keywords left None take the
        Verifier's defaults."""
        leaf = cert if isinstance(cert, x509.Certificate) else load_certificates(cert, "certificate")[0]
        extra = [c if isinstance(c, x509.Certificate) else None for c in intermediates]
        if any(c is None for c in extra):
            extra = load_certificates(intermediates, "intermediate")
        u = resolve_usage(usage) if usage is not None else self.usage
        pol = revocation or self.revocation
        if not isinstance(pol, RevocationPolicy):
            raise TypeError("revocation must be a RevocationPolicy")
        pp = self.path_policy.override(policies, require_explicit_policy, inhibit_policy_mapping,
                                       inhibit_any_policy, strict)
        now = utcnow()
        when = as_utc(at) if at is not None else now
        proven = (at is not None) if time_is_proven is None else time_is_proven
        if _fingerprints is None:
            _fingerprints = (leaf.fingerprint(_SHA256), tuple(sorted(c.fingerprint(_SHA256) for c in extra)))
        key = (
            *_fingerprints,
            u, server_name, int(when.timestamp()) // self.time_bucket, proven,
            pp, pol, self.source.generation,
            embedded.key if embedded is not None else b"",
        )
        hit = self._paths.get(key)
        if hit is not None:
            rep, not_before, valid_until = hit
            if not_before <= when <= valid_until and now <= valid_until:
                return dataclasses.replace(rep, validation_time=when, source="cache")
            self._paths.pop(key)
        rep, valid_until = validate_path(
            leaf, trust=self.trust, intermediates=list(extra) + list(self.intermediates), at=when, now=now,
            usage=u, revocation=pol, source=self.source, server_name=server_name,
            max_chain_depth=self.max_chain_depth, time_is_proven=proven, claimed_time=claimed_time,
            policy=pp, embedded=embedded, fetchers=self._fetchers(pol), asn1=self.asn1_certificate,
        )
        # only passing results are cached: for those claimed_time played no part
        if rep.passed and valid_until is not None:
            not_before = max(c.not_before for c in rep.path)
            self._paths.put(key, (rep, not_before, valid_until))
        return rep

    # -- signatures (see cms.py / pdf.py) -----------------------------------------------------

    # verify_cms(signature, data=None, *, at, usage, revocation, policies, require_explicit_policy,
    # inhibit_policy_mapping, inhibit_any_policy, strict, signer_index), verify_cms_all(...) and
    # verify_pdf(pdf, *, ...): typed, documented methods defined beside the code they run (their
    # modules import no Verifier at import time)
    from .cms import verifier_verify_cms as verify_cms, verifier_verify_cms_all as verify_cms_all
    from .pdf import verifier_verify_pdf as verify_pdf


from cryptography.hazmat.primitives import hashes as _hashes  # noqa: E402

_SHA256 = _hashes.SHA256()
from cryptography.hazmat.primitives.serialization import Encoding as _Enc  # noqa: E402

_DER = _Enc.DER


def path_policy(policies=None, require_explicit_policy=False, inhibit_policy_mapping=False,
                inhibit_any_policy=False, strict=False) -> PathPolicy:
    """A :class:`PathPolicy` from the keyword form, checking the policy OIDs."""
    init = None
    if policies is not None:
        if isinstance(policies, (str, bytes)):
            raise TypeError("policies must be an iterable of dotted OIDs, not a single string")
        init = frozenset(policies)
        for oid in init:
            if not isinstance(oid, str) or not _OID.fullmatch(oid):
                raise ValueError(f"policy {oid!r} is not a dotted OID (e.g. 2.16.156.1.2.3)")
        init = init or None
    return PathPolicy(init, bool(require_explicit_policy), bool(inhibit_policy_mapping), bool(inhibit_any_policy),
                      bool(strict))


def validate_certificate(cert, *, trust, intermediates: Sequence = (), at: _dt.datetime | None = None,
                         usage: str | Usage = "document-signing", revocation: RevocationPolicy = HARD_FAIL,
                         crls: Iterable = (), ocsp_responses: Iterable = (), server_name: str | None = None,
                         max_chain_depth: int | None = None, policies: Iterable[str] | None = None,
                         require_explicit_policy: bool = False, inhibit_policy_mapping: bool = False,
                         inhibit_any_policy: bool = False, strict: bool = False, fetcher=None) -> ValidationReport:
    """Validate one certificate (RFC 5280 path + intended use + revocation) at ``at`` (default now).

    ``trust`` may also be a :class:`Verifier` (then its caches and revocation data are used).
    See :class:`Verifier` for the keywords.
    """
    kw = dict(policies=policies, require_explicit_policy=require_explicit_policy,
              inhibit_policy_mapping=inhibit_policy_mapping, inhibit_any_policy=inhibit_any_policy, strict=strict)
    if isinstance(trust, Verifier):
        return trust.validate_certificate(cert, intermediates=intermediates, at=at, usage=usage,
                                          server_name=server_name, revocation=revocation, **kw)
    v = Verifier(trust, revocation=revocation, crls=crls, ocsp_responses=ocsp_responses, usage=usage,
                 max_chain_depth=max_chain_depth, fetcher=fetcher, cache_size=16, **kw)
    return v.validate_certificate(cert, intermediates=intermediates, at=at, server_name=server_name)


import re as _re  # noqa: E402

_OID = _re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")
