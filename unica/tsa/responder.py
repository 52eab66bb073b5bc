"""The RFC 3161 responder: a TimeStampReq in, a TimeStampResp out (RFC 3161, RFC 5816).

- The request is bounded in size (``max_request``) and read strictly as DER
  (:mod:`unica.tsa.request`); anything that is not a TimeStampReq v1 is answered ``badDataFormat``.
- An extension in the request: ``unacceptedExtension`` (none is supported).
- The message imprint: SHA-256/384/512 (parameters absent or NULL) with a digest of that
  length, else ``badAlg``.
- The policy: the one requested if the unit accepts it, the unit's default if none is asked
  for; another one is ``unacceptedPolicy``.
- While the clock is out of sync (:mod:`unica.tsa.clock`): ``timeNotAvailable``; while the
  unit is disabled (re-read from the database every second): ``systemFailure``.
- Otherwise a token: the nonce copied back, a positive random 127-bit serial, genTime with
  the declared accuracy and no ordering, ``tsa`` = the certificate subject, ESSCertIDv2, the
  certificate included when ``certReq`` asks for it. Each token issued is archived
  (:mod:`unica.tsa.archive`).

A rejection is a TimeStampResp with status ``rejection`` and a failInfo bit, never a token.
:meth:`Responder.respond` never raises for what a client sends.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from asn1crypto import core

from unica.errors import UnicaError
from unica.tsa.request import BadRequest, parse_request
from unica.tsa.token import DIGESTS, TokenTemplate, rejection
from unica.tsa.units import TSAUnitDisabled, get_unit

log = logging.getLogger("unica.tsa")

__all__ = ["Responder", "Answer", "MAX_REQUEST"]

#: the largest TimeStampReq accepted (a SHA-512 request with a 20-byte nonce and a policy is < 150 bytes)
MAX_REQUEST = 8192

_OID_TO_DIGEST = {core.ObjectIdentifier(o).contents: name for name, (o, _) in DIGESTS.items()}


def _dotted(content: bytes) -> str:
    """An OID's dotted form from its content octets (for messages; '?' if it does not decode)."""
    try:
        return core.ObjectIdentifier.load(b"\x06" + bytes([len(content)]) + content).dotted \
            if len(content) < 128 else "?"
    except Exception:
        return "?"


@dataclass(frozen=True)
class Answer:
    body: bytes
    #: granted | rejection
    status: str
    failure: str | None = None
    serial: int | None = None


class _Reject(Exception):
    def __init__(self, failure: str, text: str):
        super().__init__(text)
        self.failure = failure
        self.text = text


class Responder:
    """Answers time-stamp requests for one TSA unit of the database ``store``.

    ``clock``: an object with a ``synced`` attribute (:class:`unica.tsa.clock.ClockState`;
    None: the system clock is trusted as it is). ``key``: the unit key already loaded (else
    loaded from the unit's key URI with ``pin`` / ``passphrase`` / the environment).
    ``archive``: write each token issued to ``tsa_tokens`` (in batches, by a background thread
    started here; :meth:`close` writes what is left). Use as a context manager, or call close().
    """

    def __init__(self, store, unit: str, *, pin: str | None = None, passphrase: str | None = None, key=None,
                 clock=None, archive: bool = True, max_request: int = MAX_REQUEST, status_interval: float = 1.0):
        from unica.hsm import load_key

        info = get_unit(store, unit)
        if info.status != "active":
            raise TSAUnitDisabled(f"TSA unit {unit!r} is disabled; it issues no time-stamp "
                                  f"(add another with 'unica tsa unit add')")
        self.store = store
        self.unit = info
        self.clock = clock
        self.max_request = max_request
        if key is None:
            key = load_key(info.key_uri, **({"pin": pin} if info.key_uri.startswith("pkcs11:")
                                            else {"passphrase": passphrase}))
        cert = info.cert
        _check_key(key, cert, unit)
        self.template = TokenTemplate(key, cert, accuracy_ms=info.accuracy_ms)
        #: accepted policies by the content octets of their OID
        self._policies = {core.ObjectIdentifier(p).contents: p for p in info.policies}
        self.disabled = False
        self._status_interval = status_interval
        self._status_at = time.monotonic()
        self.archive = None
        if archive:
            from unica.tsa.archive import Archive

            self.archive = Archive(store, info.name)
            self.archive.tick = self._refresh_status
            self.archive.start()

    # --- the unit's status, re-read in the background -------------------------------------

    def _refresh_status(self) -> None:
        now = time.monotonic()
        if now - self._status_at < self._status_interval:
            return
        self._status_at = now
        from sqlalchemy import select

        from unica.store import models as m

        with self.store.read() as s:
            status = s.execute(select(m.TSAUnit.status).where(m.TSAUnit.name == self.unit.name)).scalar()
        self.disabled = status != "active"

    def healthy(self) -> bool:
        return not self.disabled and (self.clock is None or self.clock.synced)

    # --- answers ---------------------------------------------------------------------------

    def respond(self, query_der: bytes) -> bytes:
        """The DER TimeStampResp for the DER TimeStampReq ``query_der``."""
        return self.answer(query_der).body

    def answer(self, query_der: bytes) -> Answer:
        try:
            policy, alg, imprint, nonce, cert_req = self._parse(query_der)
            if self.clock is not None and not self.clock.synced:
                raise _Reject("timeNotAvailable", "the TSA's clock is not synchronised within its accuracy; "
                                                  "no time-stamp is issued until it is")
            if self.disabled:
                raise _Reject("systemFailure", f"TSA unit {self.unit.name} is disabled")
        except _Reject as r:
            return Answer(rejection(r.failure, r.text), "rejection", r.failure)
        try:
            body, issued = self.template.issue(policy, alg, imprint, nonce, cert_req)
        except Exception:  # the key or token failed: a rejection, never a half-made token
            log.exception("signing a time-stamp token failed")
            return Answer(rejection("systemFailure", "the TSA could not sign the time-stamp"), "rejection",
                          "systemFailure")
        if self.archive is not None:
            self.archive.add(issued)
        return Answer(body, "granted", None, issued.serial)

    def _parse(self, der: bytes):
        if not isinstance(der, (bytes, bytearray, memoryview)):
            raise TypeError("the request must be bytes")
        if len(der) > self.max_request:
            raise _Reject("badDataFormat", f"the request is larger than {self.max_request} bytes")
        try:
            req = parse_request(bytes(der))
        except BadRequest as e:
            raise _Reject("badDataFormat", f"the request is not a DER TimeStampReq v1: {e}") from None
        if req.has_extensions:
            raise _Reject("unacceptedExtension", "this TSA supports no request extension")
        name = _OID_TO_DIGEST.get(req.alg_oid)
        if name is None or not req.params_ok:
            raise _Reject("badAlg", f"message imprint algorithm {_dotted(req.alg_oid)} is not accepted "
                                    "(SHA-256, SHA-384, SHA-512)")
        if len(req.imprint) != DIGESTS[name][1]:
            raise _Reject("badAlg", f"a {name} message imprint is {DIGESTS[name][1]} bytes, not {len(req.imprint)}")
        if req.policy_oid is None:
            policy = self.unit.policy
        else:
            policy = self._policies.get(req.policy_oid)
            if policy is None:
                raise _Reject("unacceptedPolicy", f"policy {_dotted(req.policy_oid)} is not accepted by this TSA "
                                                  f"(accepted: {', '.join(self.unit.policies)})")
        return policy, name, req.imprint, req.nonce, req.cert_req

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _check_key(key, cert, unit: str) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    def spki(k):
        return k.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    try:
        same = spki(key.public_key()) == spki(cert.public_key())
    except Exception:
        same = False
    if not same:
        raise UnicaError(f"the key of TSA unit {unit!r} is not the key of its certificate")
