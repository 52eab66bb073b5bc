"""The responder: request bytes in, response bytes out (no HTTP here).

Boulder's shape: a thin front (:class:`unica.ocsp.http.OCSPApp`) over this function-like
object, which resolves the issuer from the request's hashes (:class:`IssuerIndex`, in
memory), then either looks a pre-signed response up (:class:`PresignedStore`) or signs one
live from a :class:`StatusSource`. :class:`Presigner` produces and refreshes the stored
responses (at half-life, Boulder's scheme) and re-signs one at once when a status changes.

Per CA (:class:`ServedCA`):

- ``mode="presigned"``: SHA-1 CertID requests are answered from the store. Misses, expired
  entries, other CertID hashes, and (if ``live_nonce``) requests carrying a nonce are
  signed live when the CA has a ``signer`` here; without one they get ``unauthorized``
  (RFC 5019 2.2.3). A nonce is never echoed in a stored response.
- ``mode="live"``: every response is signed per request; a nonce is echoed.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from unica import der
from unica.errors import ConfigurationError
from unica.ocsp.request import MalformedRequest, OCSPRequestInfo, RequestLimits, parse_request
from unica.ocsp.response import ERROR_RESPONSES, ResponseSigner, ResponseStatus, SignedResponse, cert_id_for
from unica.ocsp.source import PresignedStore, StatusSource

__all__ = ["ServedCA", "IssuerIndex", "Responder", "Presigner", "Answer"]

log = logging.getLogger("unica.ocsp")

_MODES = ("live", "presigned")


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)


@dataclass(frozen=True)
class ServedCA:
    """One CA the responder answers for, and how."""

    name: str
    issuer: x509.Certificate
    mode: str = "live"
    signer: ResponseSigner | None = field(default=None, compare=False, repr=False)
    #: pre-signed mode: sign requests that carry a nonce live (needs ``signer``)
    live_nonce: bool = False
    live_validity: _dt.timedelta = _dt.timedelta(minutes=5)
    presigned_validity: _dt.timedelta = _dt.timedelta(days=4)

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ConfigurationError(f"OCSP mode {self.mode!r} of CA {self.name} is not live or presigned")
        if self.mode == "live" and self.signer is None:
            raise ConfigurationError(f"CA {self.name} is in live OCSP mode but has no OCSP signing key")
        if self.live_nonce and self.signer is None:
            raise ConfigurationError(f"CA {self.name} allows live answers to nonce requests but has no OCSP signing key")
        if self.live_validity <= _dt.timedelta(0) or self.presigned_validity <= _dt.timedelta(0):
            raise ConfigurationError(f"OCSP response validity of CA {self.name} must be positive")


class IssuerIndex:
    """(hash algorithm, issuerNameHash, issuerKeyHash) -> :class:`ServedCA`, for SHA-1/2 and SM3."""

    ALGORITHMS = ("sha1", "sha256", "sha384", "sha512", "sm3")

    def __init__(self, cas: Iterable[ServedCA]):
        self._by_hash: dict[tuple[str, bytes, bytes], ServedCA] = {}
        self.by_name: dict[str, ServedCA] = {}
        for ca in cas:
            if ca.name in self.by_name:
                raise ConfigurationError(f"CA {ca.name} is configured twice for OCSP")
            self.by_name[ca.name] = ca
            f = der.cert_fields(ca.issuer.public_bytes(Encoding.DER))
            for alg in self.ALGORITHMS:
                key = (alg, hashlib.new(alg, f["subject"]).digest(), hashlib.new(alg, f["spk"]).digest())
                if key in self._by_hash:
                    raise ConfigurationError(f"CAs {self._by_hash[key].name} and {ca.name} have the same "
                                             "name and key; OCSP cannot tell them apart")
                self._by_hash[key] = ca

    def find(self, req: OCSPRequestInfo) -> ServedCA | None:
        c = req.cert_id
        return self._by_hash.get((c.hash_algorithm, c.issuer_name_hash, c.issuer_key_hash))


class Answer(NamedTuple):
    """What the HTTP layer writes: the body, and the response's times if it may be cached."""

    body: bytes
    status: ResponseStatus
    cacheable: SignedResponse | None = None


_ERR = {s: Answer(b, s) for s, b in ERROR_RESPONSES.items()}
MALFORMED = _ERR[ResponseStatus.malformedRequest]
UNAUTHORIZED = _ERR[ResponseStatus.unauthorized]
INTERNAL_ERROR = _ERR[ResponseStatus.internalError]
TRY_LATER = _ERR[ResponseStatus.tryLater]


class Responder:
    """``respond(der_request) -> Answer``; never raises for bad input.

    Statuses and stored responses are read on every request (never cached here), so a
    revocation is visible at once; only the parse of a request is memoised.
    """

    def __init__(self, cas: Iterable[ServedCA], source: StatusSource | None = None,
                 store: PresignedStore | None = None, *, limits: RequestLimits = RequestLimits(),
                 clock: Callable[[], _dt.datetime] = _now, parse_cache: int = 32768):
        self.index = IssuerIndex(cas)
        #: how many parsed requests (without nonce) to keep by their exact bytes, so a
        #: repeated request skips parsing and issuer matching (0: none)
        self.parse_cache = parse_cache
        self.source = source
        self.store = store
        self.limits = limits
        self.clock = clock
        self._parsed: dict[bytes, tuple[OCSPRequestInfo, ServedCA]] = {}
        for ca in self.index.by_name.values():
            if ca.mode == "presigned" and store is None:
                raise ConfigurationError(f"CA {ca.name} is in pre-signed OCSP mode but no response store is given")
            if ca.signer is not None and source is None:
                raise ConfigurationError(f"CA {ca.name} can sign live OCSP responses but no status source is given")

    def respond(self, body: bytes, trace: dict | None = None) -> Answer:
        """The answer to one DER request. ``trace``, if given, is filled for an access log
        with what applies: ``ca`` (name), ``serial``, ``cache`` (pre-signed CAs: ``hit``, a
        stored response was served, or ``miss``), ``signed`` (``live``: signed now)."""
        hit = self._parsed.get(body)
        if hit is None:
            try:
                req = parse_request(body, self.limits)
            except MalformedRequest:
                return MALFORMED
            ca = self.index.find(req)
            if ca is None:
                if trace is not None:
                    trace["serial"] = req.cert_id.serial
                return UNAUTHORIZED
            if req.nonce is None and self.parse_cache:
                if len(self._parsed) >= self.parse_cache:
                    self._parsed.clear()
                self._parsed[body] = (req, ca)
        else:
            req, ca = hit
        now = self.clock()
        serial = req.cert_id.serial
        if trace is not None:
            trace["ca"], trace["serial"] = ca.name, serial
        if ca.mode == "presigned" and not (req.nonce is not None and ca.live_nonce):
            if req.cert_id.hash_algorithm == "sha1":
                r = self.store.get(ca.name, serial)
                if r is not None and r.next_update > now and r.der and _same_cert_id(r, req):
                    if trace is not None:
                        trace["cache"] = "hit"
                    return Answer(r.der, ResponseStatus.successful, r)
            if trace is not None:
                trace["cache"] = "miss"
            if ca.signer is None:  # a lookup-only node (RFC 5019 2.2.3)
                return UNAUTHORIZED
            # a miss, a stale entry or another hash: signed live, cached like a stored one
            if trace is not None:
                trace["signed"] = "live"
            return self._live(ca, req, now, echo_nonce=False)
        if trace is not None:
            trace["signed"] = "live"
        return self._live(ca, req, now, echo_nonce=True)

    def _live(self, ca: ServedCA, req: OCSPRequestInfo, now: _dt.datetime, echo_nonce: bool) -> Answer:
        if now >= ca.signer.not_after:
            log.error("OCSP signer certificate of CA %s expired at %s", ca.name, ca.signer.not_after)
            return TRY_LATER
        status = self.source.status(ca.name, req.cert_id.serial)
        nonce = req.nonce if echo_nonce else None
        r = ca.signer.sign(req.cert_id.der, status, now, now + ca.live_validity, nonce=nonce)
        return Answer(r.der, ResponseStatus.successful, None if nonce is not None else r)

    def healthy(self) -> bool:
        """Whether the responder can answer: every live signer certificate is valid now."""
        now = self.clock()
        return all(ca.signer is None or now < ca.signer.not_after for ca in self.index.by_name.values())


def _same_cert_id(r: SignedResponse, req: OCSPRequestInfo) -> bool:
    # the stored response embeds the CertID we produced; the request's must be identical
    return req.cert_id.der in r.der


class Presigner:
    """Produces the stored responses of pre-signed CAs (needs each CA's ``signer``)."""

    def __init__(self, cas: Iterable[ServedCA], source: StatusSource, store: PresignedStore,
                 *, clock: Callable[[], _dt.datetime] = _now):
        self.cas = {ca.name: ca for ca in cas if ca.mode == "presigned"}
        for ca in self.cas.values():
            if ca.signer is None:
                raise ConfigurationError(f"cannot pre-sign OCSP responses for CA {ca.name}: no OCSP signing key")
        self.source = source
        self.store = store
        self.clock = clock

    def sign_one(self, ca_name: str, serial: int, now: _dt.datetime | None = None) -> SignedResponse:
        ca = self.cas[ca_name]
        now = now or self.clock()
        r = ca.signer.sign(cert_id_for(ca.issuer, serial), self.source.status(ca_name, serial), now,
                           now + ca.presigned_validity)
        self.store.put(ca_name, serial, r)
        return r

    def presign_all(self, ca_name: str | None = None) -> int:
        n = 0
        now = self.clock()
        for name in [ca_name] if ca_name else list(self.cas):
            for serial in self.source.serials(name):
                self.sign_one(name, serial, now)
                n += 1
        return n

    def refresh_due(self) -> int:
        """Re-sign every response past half its validity; return how many."""
        n = 0
        now = self.clock()
        for name, ca in self.cas.items():
            for serial in list(self.store.due(name, now - ca.presigned_validity / 2)):
                self.sign_one(name, serial, now)
                n += 1
        return n

    def status_changed(self, ca_name: str, serial: int) -> None:
        """Re-sign at once after a revocation / release (hook for the revocation code)."""
        if ca_name in self.cas:
            self.sign_one(ca_name, serial)
