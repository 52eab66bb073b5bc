"""The CMS structure layer of the verifier: SignedData and its attributes read as byte slices
(asn1crypto re-serialises on access, which costs ~20 ms per signature).

Only structure lives here. The TLV framing -- tags, lengths, bounds, DER strictness, element
limits -- is :mod:`unica.der`'s reader, the one DER reader of unica; its :class:`DERError`
(a :class:`ValueError` and a :class:`unica.errors.MalformedInput`) is the only exception these
functions raise. Definite lengths only: BER input is first normalised to DER by asn1crypto
(see :func:`unica.verify.cms.parse_signed_data`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools

from unica.der import DERError, decode_integer, decode_oid, read_exact, read_tlv
from unica.der import seq as _seq, tlv as _tlv

__all__ = [
    "DERError", "SignedDataRaw", "SignerInfoRaw", "parse_signed_data_der", "octet_string", "object_identifier",
    "ess_cert_id", "time", "revocation_archival", "revocation_values", "wrap_basic_ocsp",
]

#: elements framed in one SET / SEQUENCE of a SignedData (certificates, CRLs, attributes, ...)
MAX_ELEMENTS = 10_000

_RI_OCSP = "1.3.6.1.5.5.7.16.2"
_SIGNED_DATA = "1.2.840.113549.1.7.2"
#: GM/T 0010-2012 signedData (the SM2 profile of PKCS#7): the same SignedData structure
GM_SIGNED_DATA = "1.2.156.10197.6.1.4.2.2"


def _kids(buf: bytes, start: int, end: int, what: str, at_least: int = 0) -> list[tuple[int, int, int, int]]:
    """(tag, content start, content end, element start) of each element in [start, end)."""
    out = []
    pos = start
    while pos < end:  # unica.der.children, as a list (this is the hot path of CMS verification)
        if len(out) == MAX_ELEMENTS:
            raise DERError(f"{what}: more than {MAX_ELEMENTS} elements")
        tag, cs, ce = read_tlv(buf, pos, end)
        out.append((tag, cs, ce, pos))
        pos = ce
    if len(out) < at_least:
        raise DERError(f"{what}: {len(out)} element(s), expected at least {at_least}")
    return out


def _oid_at(buf: bytes, el: tuple[int, int, int, int], what: str) -> str:
    if el[0] != 0x06:
        raise DERError(f"{what} is not an OBJECT IDENTIFIER")
    return decode_oid(buf[el[1]:el[2]])


def _typed(fn):
    """Content errors (a bad digit in a time, ...) become :class:`DERError` too."""

    @functools.wraps(fn)
    def wrapper(*args, **kw):
        try:
            return fn(*args, **kw)
        except DERError:
            raise
        except (ValueError, IndexError, OverflowError) as e:
            raise DERError(f"{fn.__name__}: {type(e).__name__}: {e}") from None

    return wrapper


@dataclasses.dataclass
class SignerInfoRaw:
    sid_kind: str  # "issuer_serial" or "ski"
    sid_issuer: bytes | None
    sid_serial: int | None
    sid_ski: bytes | None
    digest_oid: str
    signed_attrs: bytes | None  # the full [0] TLV as found
    attrs: dict[str, list[bytes]]  # attribute OID -> value TLVs
    sig_oid: str
    sig_params: bytes | None  # TLV
    signature: bytes
    unsigned: dict[str, list[bytes]]


@dataclasses.dataclass
class SignedDataRaw:
    econtent_type: str
    econtent: bytes | None
    certs: list[bytes]
    signers: list[SignerInfoRaw]
    #: RevocationInfoChoices of SignedData: CRLs (DER) and OCSP responses (id-ri-ocsp-response)
    crls: list[bytes] = dataclasses.field(default_factory=list)
    ocsps: list[bytes] = dataclasses.field(default_factory=list)
    #: the ContentInfo's contentType: PKCS#7 signedData or GM/T 0010 signedData
    content_type: str = _SIGNED_DATA


def _attrs(buf: bytes, start: int, end: int) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for tag, cs, ce, _ in _kids(buf, start, end, "attributes"):
        if tag != 0x30:
            raise DERError("attribute is not a SEQUENCE")
        kids = _kids(buf, cs, ce, "attribute")
        if len(kids) != 2 or kids[0][0] != 0x06 or kids[1][0] != 0x31:
            raise DERError("bad attribute")
        vals = [buf[st:ve] for _, _, ve, st in _kids(buf, kids[1][1], kids[1][2], "attribute values")]
        out.setdefault(decode_oid(buf[kids[0][1]:kids[0][2]]), []).extend(vals)
    return out


def _inner(buf: bytes, start: int, end: int, what: str) -> tuple[int, int, int]:
    """The one TLV that fills an EXPLICIT tag's contents [start, end)."""
    t, cs, ce = read_tlv(buf, start, end)
    if ce != end:
        raise DERError(f"{what}: trailing data inside the explicit tag")
    return t, cs, ce


def _signer_info(buf: bytes, c1: int, c2: int) -> SignerInfoRaw:
    f = _kids(buf, c1, c2, "SignerInfo", 5)
    if f[0][0] != 0x02:
        raise DERError("SignerInfo version is not an INTEGER")
    sid = f[1]
    if sid[0] == 0x30:
        ias = _kids(buf, sid[1], sid[2], "IssuerAndSerialNumber")
        if len(ias) != 2 or ias[0][0] != 0x30 or ias[1][0] != 0x02:
            raise DERError("bad IssuerAndSerialNumber")
        kind, issuer = "issuer_serial", buf[ias[0][3]:ias[0][2]]
        serial = decode_integer(buf[ias[1][1]:ias[1][2]])
        ski = None
    elif sid[0] == 0x80:
        kind, issuer, serial, ski = "ski", None, None, buf[sid[1]:sid[2]]
    else:
        raise DERError("bad SignerIdentifier")
    if f[2][0] != 0x30:
        raise DERError("digestAlgorithm is not a SEQUENCE")
    dig = _kids(buf, f[2][1], f[2][2], "digestAlgorithm", 1)
    digest_oid = _oid_at(buf, dig[0], "digest algorithm")
    i = 3
    signed_attrs = None
    attrs: dict[str, list[bytes]] = {}
    if f[i][0] == 0xA0:
        signed_attrs = buf[f[i][3]:f[i][2]]
        attrs = _attrs(buf, f[i][1], f[i][2])
        i += 1
    if len(f) < i + 2:
        raise DERError("SignerInfo lacks signatureAlgorithm or signature")
    if f[i][0] != 0x30:
        raise DERError("signatureAlgorithm is not a SEQUENCE")
    sa = _kids(buf, f[i][1], f[i][2], "signatureAlgorithm", 1)
    sig_oid = _oid_at(buf, sa[0], "signature algorithm")
    sig_params = buf[sa[1][3]:sa[1][2]] if len(sa) > 1 else None
    i += 1
    if f[i][0] != 0x04:
        raise DERError("signature is not an OCTET STRING")
    signature = buf[f[i][1]:f[i][2]]
    i += 1
    unsigned: dict[str, list[bytes]] = {}
    if i < len(f) and f[i][0] == 0xA1:
        unsigned = _attrs(buf, f[i][1], f[i][2])
    return SignerInfoRaw(kind, issuer, serial, ski, digest_oid, signed_attrs, attrs, sig_oid, sig_params,
                         signature, unsigned)


def parse_signed_data_der(buf: bytes) -> SignedDataRaw:
    """A DER ContentInfo holding SignedData (nothing after it) -> :class:`SignedDataRaw`."""
    _, cs, ce = read_exact(buf, 0x30, "ContentInfo")
    ci = _kids(buf, cs, ce, "ContentInfo")
    if len(ci) != 2 or ci[0][0] != 0x06 or ci[1][0] != 0xA0:
        raise DERError("bad ContentInfo")
    ci_type = decode_oid(buf[ci[0][1]:ci[0][2]])
    if ci_type not in (_SIGNED_DATA, GM_SIGNED_DATA):
        raise DERError("not signed-data")
    t, scs, sce = _inner(buf, ci[1][1], ci[1][2], "ContentInfo content")
    if t != 0x30:
        raise DERError("SignedData is not a SEQUENCE")
    sd = _kids(buf, scs, sce, "SignedData")
    if len(sd) < 4 or sd[0][0] != 0x02 or sd[1][0] != 0x31 or sd[2][0] != 0x30:
        raise DERError("bad SignedData")
    eci = _kids(buf, sd[2][1], sd[2][2], "EncapsulatedContentInfo")
    if not eci or eci[0][0] != 0x06 or len(eci) > 2:
        raise DERError("bad EncapsulatedContentInfo")
    etype = decode_oid(buf[eci[0][1]:eci[0][2]])
    econtent = None
    if len(eci) > 1:
        if eci[1][0] != 0xA0:
            raise DERError("bad eContent")
        t, ocs, oce = _inner(buf, eci[1][1], eci[1][2], "eContent")
        if t != 0x04:
            raise DERError("eContent is not a primitive OCTET STRING")
        econtent = buf[ocs:oce]
    certs: list[bytes] = []
    rest = sd[3:]
    if rest and rest[0][0] == 0xA0:
        for t, _, c2, st in _kids(buf, rest[0][1], rest[0][2], "certificates"):
            if t == 0x30:
                certs.append(buf[st:c2])
        rest = rest[1:]
    crls: list[bytes] = []
    ocsps: list[bytes] = []
    if rest and rest[0][0] == 0xA1:
        for t, c1, c2, st in _kids(buf, rest[0][1], rest[0][2], "crls"):
            if t == 0x30:
                crls.append(buf[st:c2])
            elif t == 0xA1:  # OtherRevocationInfoFormat
                kids = _kids(buf, c1, c2, "OtherRevocationInfoFormat")
                if len(kids) == 2 and kids[0][0] == 0x06 and decode_oid(buf[kids[0][1]:kids[0][2]]) == _RI_OCSP:
                    ocsps.append(buf[kids[1][3]:kids[1][2]])
        rest = rest[1:]
    if len(rest) != 1 or rest[0][0] != 0x31:
        raise DERError("bad signerInfos")
    signers = []
    for t, c1, c2, _ in _kids(buf, rest[0][1], rest[0][2], "signerInfos"):
        if t != 0x30:
            raise DERError("SignerInfo is not a SEQUENCE")
        signers.append(_signer_info(buf, c1, c2))
    return SignedDataRaw(etype, econtent, certs, signers, crls, ocsps, ci_type)


def octet_string(value_tlv: bytes) -> bytes:
    _, cs, ce = read_exact(value_tlv, 0x04, "OCTET STRING")
    return value_tlv[cs:ce]


def object_identifier(value_tlv: bytes) -> str:
    _, cs, ce = read_exact(value_tlv, 0x06, "OBJECT IDENTIFIER")
    return decode_oid(value_tlv[cs:ce])


def ess_cert_id(value_tlv: bytes, v2: bool) -> tuple[str, bytes]:
    """First ESSCertID(v2) of a SigningCertificate(V2): (hash OID, certHash)."""
    _, cs, ce = read_exact(value_tlv, 0x30, "SigningCertificate")
    outer = _kids(value_tlv, cs, ce, "SigningCertificate", 1)
    if outer[0][0] != 0x30:
        raise DERError("bad SigningCertificate")
    ids = _kids(value_tlv, outer[0][1], outer[0][2], "SigningCertificate certs", 1)
    if ids[0][0] != 0x30:
        raise DERError("bad ESSCertID")
    first = _kids(value_tlv, ids[0][1], ids[0][2], "ESSCertID", 1)
    if v2 and first[0][0] == 0x30:
        alg = _kids(value_tlv, first[0][1], first[0][2], "ESSCertIDv2 hashAlgorithm", 1)
        h = _oid_at(value_tlv, alg[0], "ESSCertIDv2 hash algorithm")
        first = first[1:]
    else:
        h = "2.16.840.1.101.3.4.2.1" if v2 else "1.3.14.3.2.26"
    if not first or first[0][0] != 0x04:
        raise DERError("bad ESSCertID")
    return h, value_tlv[first[0][1]:first[0][2]]


@_typed
def time(value_tlv: bytes) -> _dt.datetime:
    """UTCTime / GeneralizedTime (Z form, as DER requires) -> aware datetime."""
    t, cs, ce = read_exact(value_tlv, None, "time")
    if t not in (0x17, 0x18):
        raise DERError("not a time")
    text = bytes(value_tlv[cs:ce]).decode("ascii")
    if not text.endswith("Z"):
        raise DERError("time without Z")
    text = text[:-1]
    frac = 0
    if "." in text:
        text, f = text.split(".", 1)
        if not f.isdigit():
            raise DERError("bad fraction of a second")
        frac = int((f + "000000")[:6])
    if not text.isdigit():
        raise DERError("time is not all digits")
    if t == 0x17:  # UTCTime YYMMDDHHMM[SS]
        yy = int(text[0:2])
        year = 1900 + yy if yy >= 50 else 2000 + yy
        rest = text[2:]
    else:
        year = int(text[0:4])
        rest = text[4:]
    if len(rest) not in (8, 10):
        raise DERError("time is not [YY]YYMMDDHHMM[SS]Z")
    sec = int(rest[8:10]) if len(rest) >= 10 else 0
    return _dt.datetime(year, int(rest[0:2]), int(rest[2:4]), int(rest[4:6]), int(rest[6:8]), sec, frac,
                        tzinfo=_dt.timezone.utc)


def _seq_elements(buf: bytes, start: int, end: int) -> list[bytes]:
    return [buf[st:ce] for _, _, ce, st in _kids(buf, start, end, "SEQUENCE OF")]


def revocation_archival(value_tlv: bytes) -> tuple[list[bytes], list[bytes]]:
    """Adobe RevocationInfoArchival (signed attribute 1.2.840.113583.1.1.8):
    ``SEQUENCE { crl [0] EXPLICIT SEQUENCE OF CertificateList OPTIONAL,
    ocsp [1] EXPLICIT SEQUENCE OF OCSPResponse OPTIONAL, ... }`` -> (CRLs, OCSP responses)."""
    _, cs, ce = read_exact(value_tlv, 0x30, "RevocationInfoArchival")
    crls: list[bytes] = []
    ocsps: list[bytes] = []
    for tag, c1, c2, _ in _kids(value_tlv, cs, ce, "RevocationInfoArchival"):
        if tag in (0xA0, 0xA1):
            st, s1, s2 = _inner(value_tlv, c1, c2, "RevocationInfoArchival")
            if st != 0x30:
                raise DERError("RevocationInfoArchival: not a SEQUENCE OF")
            (crls if tag == 0xA0 else ocsps).extend(_seq_elements(value_tlv, s1, s2))
    return crls, ocsps


def revocation_values(value_tlv: bytes) -> tuple[list[bytes], list[bytes]]:
    """CAdES RevocationValues (unsigned attribute 1.2.840.113549.1.9.16.2.24):
    ``SEQUENCE { crlVals [0] SEQUENCE OF CertificateList OPTIONAL, ocspVals [1] SEQUENCE OF
    BasicOCSPResponse OPTIONAL, ... }`` -> (CRLs, OCSP responses wrapped as OCSPResponse)."""
    crls, basics = revocation_archival(value_tlv)
    return crls, [wrap_basic_ocsp(b) for b in basics]


_ID_PKIX_OCSP_BASIC = bytes.fromhex("06092b0601050507300101")


def wrap_basic_ocsp(basic: bytes) -> bytes:
    """OCSPResponse { successful, responseBytes { id-pkix-ocsp-basic, OCTET STRING basic } }."""
    rb = _seq(_ID_PKIX_OCSP_BASIC, _tlv(0x04, bytes(basic)))
    return _seq(b"\x0a\x01\x00", _tlv(0xA0, rb))
