"""A minimal DER reader for the CMS hot path (asn1crypto re-serialises on access, which
costs ~20 ms per signature; this reads byte slices). Definite lengths only: BER input is
first normalised to DER by asn1crypto (see :func:`parse_signed_data`)."""

from __future__ import annotations

import dataclasses


class DERError(ValueError):
    pass


def tlv(buf: bytes, pos: int, end: int | None = None) -> tuple[int, int, int, int]:
    """-> (tag byte, content start, content end, next position)."""
    if end is None:
        end = len(buf)
    if pos + 2 > end:
        raise DERError("truncated")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise DERError("high tag numbers unsupported")
    ln = buf[pos + 1]
    p = pos + 2
    if ln & 0x80:
        n = ln & 0x7F
        if n == 0:
            raise DERError("indefinite length")
        if n > 4 or p + n > end:
            raise DERError("bad length")
        ln = int.from_bytes(buf[p:p + n], "big")
        p += n
    if p + ln > end:
        raise DERError("truncated")
    return tag, p, p + ln, p + ln


def children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, content start, content end, element start) of each element in [start, end)."""
    out = []
    p = start
    while p < end:
        tag, cs, ce, nxt = tlv(buf, p, end)
        out.append((tag, cs, ce, p))
        p = nxt
    return out


_OID_CACHE: dict[bytes, str] = {}
_RI_OCSP = "1.3.6.1.5.5.7.16.2"


def oid(raw: bytes) -> str:
    s = _OID_CACHE.get(raw)
    if s is None:
        if not raw:
            raise DERError("empty OID")
        first = raw[0]
        parts = [str(min(first // 40, 2)), str(first - 40 * min(first // 40, 2))]
        v = 0
        for b in raw[1:]:
            v = (v << 7) | (b & 0x7F)
            if not b & 0x80:
                parts.append(str(v))
                v = 0
        s = ".".join(parts)
        if len(_OID_CACHE) < 4096:
            _OID_CACHE[raw] = s
    return s


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


def _attrs(buf: bytes, start: int, end: int) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for tag, cs, ce, _ in children(buf, start, end):
        if tag != 0x30:
            raise DERError("attribute is not a SEQUENCE")
        kids = children(buf, cs, ce)
        if len(kids) != 2 or kids[0][0] != 0x06 or kids[1][0] != 0x31:
            raise DERError("bad attribute")
        vals = [buf[e[3]:e[2]] for e in children(buf, kids[1][1], kids[1][2])]
        out.setdefault(oid(buf[kids[0][1]:kids[0][2]]), []).extend(vals)
    return out


def parse_signed_data_der(buf: bytes) -> SignedDataRaw:
    tag, cs, ce, nxt = tlv(buf, 0)
    if tag != 0x30 or nxt != len(buf):
        raise DERError("ContentInfo is not one SEQUENCE")
    ci = children(buf, cs, ce)
    if len(ci) != 2 or ci[0][0] != 0x06 or ci[1][0] != 0xA0:
        raise DERError("bad ContentInfo")
    if oid(buf[ci[0][1]:ci[0][2]]) != "1.2.840.113549.1.7.2":
        raise DERError("not signed-data")
    t, scs, sce, _ = tlv(buf, ci[1][1], ci[1][2])
    if t != 0x30:
        raise DERError("SignedData is not a SEQUENCE")
    sd = children(buf, scs, sce)
    if len(sd) < 4 or sd[0][0] != 0x02 or sd[1][0] != 0x31 or sd[2][0] != 0x30:
        raise DERError("bad SignedData")
    eci = children(buf, sd[2][1], sd[2][2])
    if not eci or eci[0][0] != 0x06:
        raise DERError("bad EncapsulatedContentInfo")
    etype = oid(buf[eci[0][1]:eci[0][2]])
    econtent = None
    if len(eci) > 1:
        if eci[1][0] != 0xA0:
            raise DERError("bad eContent")
        t, ocs, oce, _ = tlv(buf, eci[1][1], eci[1][2])
        if t != 0x04:
            raise DERError("eContent is not a primitive OCTET STRING")
        econtent = buf[ocs:oce]
    certs: list[bytes] = []
    rest = sd[3:]
    if rest and rest[0][0] == 0xA0:
        for t, c1, c2, st in children(buf, rest[0][1], rest[0][2]):
            if t == 0x30:
                certs.append(buf[st:c2])
        rest = rest[1:]
    crls: list[bytes] = []
    ocsps: list[bytes] = []
    if rest and rest[0][0] == 0xA1:
        for t, c1, c2, st in children(buf, rest[0][1], rest[0][2]):
            if t == 0x30:
                crls.append(buf[st:c2])
            elif t == 0xA1:  # OtherRevocationInfoFormat
                kids = children(buf, c1, c2)
                if len(kids) == 2 and kids[0][0] == 0x06 and oid(buf[kids[0][1]:kids[0][2]]) == _RI_OCSP:
                    ocsps.append(buf[kids[1][3]:kids[1][2]])
        rest = rest[1:]
    if len(rest) != 1 or rest[0][0] != 0x31:
        raise DERError("bad signerInfos")
    signers = []
    for t, c1, c2, _ in children(buf, rest[0][1], rest[0][2]):
        if t != 0x30:
            raise DERError("SignerInfo is not a SEQUENCE")
        f = children(buf, c1, c2)
        i = 1
        sid = f[i]
        if sid[0] == 0x30:
            ias = children(buf, sid[1], sid[2])
            if len(ias) != 2 or ias[1][0] != 0x02:
                raise DERError("bad IssuerAndSerialNumber")
            kind, issuer = "issuer_serial", buf[ias[0][3]:ias[0][2]]
            serial = int.from_bytes(buf[ias[1][1]:ias[1][2]], "big", signed=True)
            ski = None
        elif sid[0] == 0x80:
            kind, issuer, serial, ski = "ski", None, None, buf[sid[1]:sid[2]]
        else:
            raise DERError("bad SignerIdentifier")
        i += 1
        dig = children(buf, f[i][1], f[i][2])
        digest_oid = oid(buf[dig[0][1]:dig[0][2]])
        i += 1
        signed_attrs = None
        attrs: dict[str, list[bytes]] = {}
        if f[i][0] == 0xA0:
            signed_attrs = buf[f[i][3]:f[i][2]]
            attrs = _attrs(buf, f[i][1], f[i][2])
            i += 1
        sa = children(buf, f[i][1], f[i][2])
        sig_oid = oid(buf[sa[0][1]:sa[0][2]])
        sig_params = buf[sa[1][3]:sa[1][2]] if len(sa) > 1 else None
        i += 1
        if f[i][0] != 0x04:
            raise DERError("signature is not an OCTET STRING")
        signature = buf[f[i][1]:f[i][2]]
        i += 1
        unsigned: dict[str, list[bytes]] = {}
        if i < len(f) and f[i][0] == 0xA1:
            unsigned = _attrs(buf, f[i][1], f[i][2])
        signers.append(SignerInfoRaw(kind, issuer, serial, ski, digest_oid, signed_attrs, attrs, sig_oid,
                                     sig_params, signature, unsigned))
    return SignedDataRaw(etype, econtent, certs, signers, crls, ocsps)


def octet_string(value_tlv: bytes) -> bytes:
    t, cs, ce, _ = tlv(value_tlv, 0)
    if t != 0x04:
        raise DERError("not an OCTET STRING")
    return value_tlv[cs:ce]


def object_identifier(value_tlv: bytes) -> str:
    t, cs, ce, _ = tlv(value_tlv, 0)
    if t != 0x06:
        raise DERError("not an OBJECT IDENTIFIER")
    return oid(value_tlv[cs:ce])


def ess_cert_id(value_tlv: bytes, v2: bool) -> tuple[str, bytes]:
    """First ESSCertID(v2) of a SigningCertificate(V2): (hash OID, certHash)."""
    t, cs, ce, _ = tlv(value_tlv, 0)
    outer = children(value_tlv, cs, ce)
    ids = children(value_tlv, outer[0][1], outer[0][2])
    first = children(value_tlv, ids[0][1], ids[0][2])
    if v2 and first[0][0] == 0x30:
        alg = children(value_tlv, first[0][1], first[0][2])
        h = oid(value_tlv[alg[0][1]:alg[0][2]])
        first = first[1:]
    else:
        h = "2.16.840.1.101.3.4.2.1" if v2 else "1.3.14.3.2.26"
    if first[0][0] != 0x04:
        raise DERError("bad ESSCertID")
    return h, value_tlv[first[0][1]:first[0][2]]


def time(value_tlv: bytes):
    """UTCTime / GeneralizedTime (Z form, as DER requires) -> aware datetime."""
    import datetime as _dt

    t, cs, ce, _ = tlv(value_tlv, 0)
    text = value_tlv[cs:ce].decode("ascii")
    if not text.endswith("Z"):
        raise DERError("time without Z")
    text = text[:-1]
    frac = 0
    if "." in text:
        text, f = text.split(".", 1)
        frac = int((f + "000000")[:6])
    if t == 0x17:  # UTCTime YYMMDDHHMM[SS]
        yy = int(text[0:2])
        year = 1900 + yy if yy >= 50 else 2000 + yy
        rest = text[2:]
    elif t == 0x18:
        year = int(text[0:4])
        rest = text[4:]
    else:
        raise DERError("not a time")
    sec = int(rest[8:10]) if len(rest) >= 10 else 0
    return _dt.datetime(year, int(rest[0:2]), int(rest[2:4]), int(rest[4:6]), int(rest[6:8]), sec, frac,
                        tzinfo=_dt.timezone.utc)


def _seq_elements(buf: bytes, start: int, end: int) -> list[bytes]:
    return [buf[st:ce] for _, _, ce, st in children(buf, start, end)]


def revocation_archival(value_tlv: bytes) -> tuple[list[bytes], list[bytes]]:
    """Adobe RevocationInfoArchival (signed attribute 1.2.840.113583.1.1.8):
    ``SEQUENCE { crl [0] EXPLICIT SEQUENCE OF CertificateList OPTIONAL,
    ocsp [1] EXPLICIT SEQUENCE OF OCSPResponse OPTIONAL, ... }`` -> (CRLs, OCSP responses)."""
    t, cs, ce, _ = tlv(value_tlv, 0)
    crls: list[bytes] = []
    ocsps: list[bytes] = []
    for tag, c1, c2, _ in children(value_tlv, cs, ce):
        if tag in (0xA0, 0xA1):
            st, s1, s2, _ = tlv(value_tlv, c1, c2)
            (crls if tag == 0xA0 else ocsps).extend(_seq_elements(value_tlv, s1, s2))
    return crls, ocsps


def revocation_values(value_tlv: bytes) -> tuple[list[bytes], list[bytes]]:
    """CAdES RevocationValues (unsigned attribute 1.2.840.113549.1.9.16.2.24):
    ``SEQUENCE { crlVals [0] SEQUENCE OF CertificateList OPTIONAL, ocspVals [1] SEQUENCE OF
    BasicOCSPResponse OPTIONAL, ... }`` -> (CRLs, OCSP responses wrapped as OCSPResponse)."""
    crls, basics = revocation_archival(value_tlv)
    return crls, [wrap_basic_ocsp(b) for b in basics]


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _len(len(content)) + content


_ID_PKIX_OCSP_BASIC = bytes.fromhex("06092b0601050507300101")


def wrap_basic_ocsp(basic: bytes) -> bytes:
    """OCSPResponse { successful, responseBytes { id-pkix-ocsp-basic, OCTET STRING basic } }."""
    rb = _tlv(0x30, _ID_PKIX_OCSP_BASIC + _tlv(0x04, basic))
    return _tlv(0x30, bytes.fromhex("0a0100") + _tlv(0xA0, rb))
