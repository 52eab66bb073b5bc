"""Parsing OCSP requests (RFC 6960 4.1) with hard limits, from POST bodies and GET paths.

Decisions (documented in the README):

- One certificate per request (RFC 5019 2.1.1: clients MUST include only one Request).
  A request listing more is refused with ``malformedRequest`` without decoding the rest
  (pre-signed responses are per certificate; a CDN caches per certificate).
- Body size: at most :attr:`RequestLimits.max_body` octets (the HTTP layer answers 413
  before reading more).
- Nonce (RFC 8954): the extnValue must be one OCTET STRING of 1..32 octets; 0 or more
  than 32 octets, or anything that is not an OCTET STRING, is ``malformedRequest``. A
  valid nonce is echoed verbatim in live responses.
- Request signatures (optionalSignature) are not required and not checked; other request
  extensions are ignored.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from unica import der
from unica.der import INTEGER, OCTET_STRING, OID, SEQUENCE, ctx
from unica.errors import MalformedInput

__all__ = ["CertID", "OCSPRequestInfo", "RequestLimits", "MalformedRequest", "parse_request",
           "decode_get_path", "HASH_OIDS"]

#: hash algorithm OIDs an OCSP CertID may use, by name
HASH_OIDS = {
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
    "1.2.156.10197.1.401": "sm3",  # GM/T 0006: the CertID hash of SM2 relying parties
}
_NONCE_OID_CONTENT = bytes.fromhex("2b0601050507300102")  # 1.3.6.1.5.5.7.48.1.2


class MalformedRequest(MalformedInput):
    """The OCSP request cannot be parsed or breaks a limit (answered with malformedRequest)."""


@dataclass(frozen=True)
class RequestLimits:
    """Limits applied to every request before any lookup."""

    #: largest POST body / decoded GET request, in octets
    max_body: int = 8192

    def __post_init__(self) -> None:
        if self.max_body < 64:
            raise ValueError(f"OCSP request body limit {self.max_body} is too small (at least 64 octets)")


@dataclass(frozen=True, slots=True)
class CertID:
    """The certificate a request asks about. ``hash_algorithm`` is ``sha1``/``sha256``/...
    or the dotted OID when unknown; ``der`` is the exact CertID as received (echoed in
    the response, so the client's comparison succeeds)."""

    hash_algorithm: str
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial: int
    der: bytes


@dataclass(frozen=True, slots=True)
class OCSPRequestInfo:
    cert_id: CertID
    #: the nonce extension's extnValue content (a DER OCTET STRING), or None
    nonce: bytes | None = None


def _bad(msg: str) -> MalformedRequest:
    return MalformedRequest(f"OCSP request: {msg}")


def parse_request(data: bytes, limits: RequestLimits = RequestLimits()) -> OCSPRequestInfo:
    """Parse one DER OCSPRequest; raise :class:`MalformedRequest` for anything else."""
    if len(data) > limits.max_body:
        raise _bad(f"{len(data)} octets is over the limit of {limits.max_body}")
    try:
        return _parse(data)
    except MalformedRequest:
        raise
    except (der.DERError, ValueError, IndexError) as e:
        raise _bad(str(e)) from None


def _parse(data: bytes) -> OCSPRequestInfo:
    s, e = der.expect(data, 0, SEQUENCE, what="OCSPRequest")
    if e != len(data):
        raise _bad("trailing data after the OCSPRequest")
    ts, te = der.expect(data, s, SEQUENCE, e, "TBSRequest")
    request_list = None
    nonce = None
    for tag, vs, ve, _ in der.children(data, ts, te, 4):
        if tag == ctx(0) or tag == ctx(1):  # version, requestorName
            if request_list is not None:
                raise _bad("fields out of order")
            continue
        if tag == SEQUENCE:
            if request_list is not None:
                raise _bad("two request lists")
            request_list = (vs, ve)
        elif tag == ctx(2):
            if request_list is None:
                raise _bad("extensions before the request list")
            nonce = _find_nonce(data, vs, ve)
        else:
            raise _bad(f"unexpected field with tag 0x{tag:02x} in TBSRequest")
    if request_list is None:
        raise _bad("no request list")
    it = der.children(data, *request_list)
    first = next(it, None)
    if first is None:
        raise _bad("the request list is empty")
    if next(it, None) is not None:
        raise _bad("more than one certificate in one request (RFC 5019: one per request)")
    tag, rs, re_, _ = first
    if tag != SEQUENCE:
        raise _bad("a Request is not a SEQUENCE")
    cs, ce = der.expect(data, rs, SEQUENCE, re_, "CertID")
    cert_id_der = bytes(data[rs:ce])  # the exact TLV, echoed in the response
    parts = list(der.children(data, cs, ce, 4))
    if len(parts) != 4 or [p[0] for p in parts] != [SEQUENCE, OCTET_STRING, OCTET_STRING, INTEGER]:
        raise _bad("CertID must be hashAlgorithm, issuerNameHash, issuerKeyHash, serialNumber")
    (_, as_, ae, _), (_, ns, ne, _), (_, ks, ke, _), (_, ss, se, _) = parts
    ots, ote = der.expect(data, as_, OID, ae, "hash algorithm")
    alg_oid = der.decode_oid(bytes(data[ots:ote]))
    serial = der.decode_integer(bytes(data[ss:se]))
    if se - ss > 32:
        raise _bad("serial number longer than 32 octets")
    # the CertID is echoed verbatim in the response: it must be DER, or clients cannot parse
    # the answer (e.g. hashAlgorithm parameters 00 00, a non-minimal INTEGER or length)
    alg = list(der.children(data, as_, ae, 3))
    null = len(alg) == 2 and alg[1][0] == der.NULL and alg[1][1] == alg[1][2]
    if len(alg) > 2 or (len(alg) == 2 and not null):
        raise _bad("hash algorithm parameters must be absent or NULL")
    canonical = der.seq(der.seq(der.oid(alg_oid), b"\x05\x00" if null else b""), der.octet_string(bytes(data[ns:ne])),
                        der.octet_string(bytes(data[ks:ke])), der.integer(serial))
    if canonical != cert_id_der:
        raise _bad("CertID is not DER-encoded")
    cert_id = CertID(HASH_OIDS.get(alg_oid, alg_oid), bytes(data[ns:ne]), bytes(data[ks:ke]), serial, cert_id_der)
    return OCSPRequestInfo(cert_id, nonce)


def _find_nonce(data: bytes, vs: int, ve: int) -> bytes | None:
    es, ee = der.expect(data, vs, SEQUENCE, ve, "requestExtensions")
    nonce = None
    for tag, xs, xe, _ in der.children(data, es, ee, 16):
        if tag != SEQUENCE:
            raise _bad("an extension is not a SEQUENCE")
        fields = list(der.children(data, xs, xe, 3))
        if not fields or fields[0][0] != OID:
            raise _bad("an extension has no OID")
        if bytes(data[fields[0][1]:fields[0][2]]) != _NONCE_OID_CONTENT:
            continue
        if nonce is not None:
            raise _bad("two nonce extensions")
        value = fields[-1]
        if value[0] != OCTET_STRING:
            raise _bad("nonce extension has no extnValue")
        inner = bytes(data[value[1]:value[2]])
        try:
            t, s, e = der.read_tlv(inner, 0)
        except der.DERError:
            raise _bad("nonce is not a DER OCTET STRING (RFC 8954)") from None
        if t != OCTET_STRING or e != len(inner):
            raise _bad("nonce is not a DER OCTET STRING (RFC 8954)")
        if not 1 <= e - s <= 32:
            raise _bad(f"nonce of {e - s} octets; RFC 8954 allows 1 to 32")
        if inner != der.octet_string(inner[s:e]):  # echoed in live responses: must be DER
            raise _bad("nonce is not a DER OCTET STRING (RFC 8954)")
        nonce = inner
    return nonce


def decode_get_path(raw_path: bytes, prefix: bytes = b"/") -> bytes:
    """The DER request from a GET path ``prefix + urlencode(base64(DER))`` (RFC 6960
    A.1). Tolerates missing padding and the URL-safe alphabet."""
    if not raw_path.startswith(prefix):
        raise _bad("GET path outside the responder's prefix")
    text = unquote_to_bytes(raw_path[len(prefix):])
    text = text.strip().replace(b"-", b"+").replace(b"_", b"/")
    if not text:
        raise _bad("empty GET path")
    text += b"=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("GET path is not base64") from None
