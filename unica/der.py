"""A small, fast DER writer and a strict, bounded DER reader.

Used where ``cryptography``'s builders are too slow or too rigid: CRLs with millions of
entries (:mod:`unica.ca.crl`) and OCSP requests/responses (:mod:`unica.ocsp`). Only what
those need is here: TLV framing, INTEGER, OID, times, BOOLEAN, and the AlgorithmIdentifier
and signature call for each key type.

The writer functions return ``bytes``. The reader (:func:`read_tlv`, :func:`expect`,
:func:`read_exact`, :func:`children`, :func:`walk`, :func:`decode_oid`) is the only DER reader
of unica -- the CMS structure layer of :mod:`unica.verify._der` is built on it. It is strict
(DER, not BER: the rules are listed above :func:`read_tlv`), bounded (no recursion, element
and nesting limits), and raises :class:`DERError` (a :class:`unica.errors.MalformedInput` and a
:class:`ValueError`) on anything it cannot frame, never another exception.
"""

from __future__ import annotations

import datetime as _dt

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from unica.errors import MalformedInput, UnsupportedKeyType

# --- tags ---------------------------------------------------------------------------

BOOLEAN = 0x01
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
ENUMERATED = 0x0A
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
SEQUENCE = 0x30
SET = 0x31


def ctx(n: int, constructed: bool = True) -> int:
    """The tag byte of context-specific ``[n]`` (n < 31)."""
    return (0xA0 if constructed else 0x80) | n


class DERError(MalformedInput, ValueError):
    """Bytes that should be DER cannot be framed (bad length, truncated, wrong tag).

    The one DER error type of unica: a :class:`~unica.errors.MalformedInput` (so an
    :class:`~unica.errors.UnicaError`, exit status 2 in the CLI) and a :class:`ValueError`
    (what the CMS layer of :mod:`unica.verify` has always raised)."""


# --- writer -------------------------------------------------------------------------


def enc_len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    b = n.to_bytes((n.bit_length() + 7) >> 3, "big")
    return bytes((0x80 | len(b),)) + b


def tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes((tag, n)) + value
    return bytes((tag,)) + enc_len(n) + value


def seq(*parts: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(parts))


def integer_bytes(n: int) -> bytes:
    """The content octets of a DER INTEGER (two's complement, minimal)."""
    if n >= 0:
        return n.to_bytes((n.bit_length() + 8) >> 3, "big")
    return n.to_bytes((n + 1).bit_length() // 8 + 1, "big", signed=True)


def integer(n: int) -> bytes:
    return tlv(INTEGER, integer_bytes(n))


def enumerated(n: int) -> bytes:
    return tlv(ENUMERATED, integer_bytes(n))


def boolean(v: bool) -> bytes:
    return b"\x01\x01\xff" if v else b"\x01\x01\x00"


def octet_string(b: bytes) -> bytes:
    return tlv(OCTET_STRING, b)


def bit_string(b: bytes) -> bytes:
    return tlv(BIT_STRING, b"\x00" + b)


def oid(dotted: str) -> bytes:
    """DER of an OBJECT IDENTIFIER given in dotted form."""
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39):
        raise ValueError(f"not an OID: {dotted!r}")
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return tlv(OID, bytes(out))


def _utc(t: _dt.datetime) -> _dt.datetime:
    if not isinstance(t, _dt.datetime):
        raise TypeError(f"expected a datetime, got {type(t).__name__}")
    if t.tzinfo is None:
        raise ValueError(f"datetime {t.isoformat()} is naive; give a timezone-aware (UTC) time")
    return t.astimezone(_dt.timezone.utc)


_D2 = [b"%02d" % i for i in range(100)]


def generalized_time(t: _dt.datetime) -> bytes:
    """GeneralizedTime ``YYYYMMDDHHMMSSZ`` (whole seconds, as RFC 5280 requires)."""
    t = _utc(t)
    return b"\x18\x0f" + b"%04d" % t.year + _D2[t.month] + _D2[t.day] + _D2[t.hour] + _D2[t.minute] + _D2[t.second] + b"Z"


def x509_time(t: _dt.datetime) -> bytes:
    """RFC 5280 Time: UTCTime through 2049, GeneralizedTime from 2050."""
    t = _utc(t)
    if 1950 <= t.year <= 2049:
        return b"\x17\x0d" + _D2[t.year % 100] + _D2[t.month] + _D2[t.day] + _D2[t.hour] + _D2[t.minute] + _D2[t.second] + b"Z"
    return generalized_time(t)


def extension(oid_der: bytes, value_der: bytes, critical: bool = False) -> bytes:
    """One X.509 Extension (``oid_der`` already DER-encoded; ``value_der`` is the extnValue
    content, wrapped in the OCTET STRING here)."""
    return seq(oid_der, boolean(True) if critical else b"", octet_string(value_der))


# --- reader -------------------------------------------------------------------------
#
# The one DER reader of unica (unica.ca, unica.ocsp and the CMS layer of unica.verify).
# Strictness rules, checked on every element it frames:
#
# - identifier: one octet. High tag numbers (>= 31, the multi-octet form) are refused, and so
#   are the universal tag numbers X.680 leaves unassigned or BER-only: 0 (end-of-contents),
#   14 and 15. Universal types have one form in DER: SEQUENCE, SET, EXTERNAL, EMBEDDED PDV and
#   CHARACTER STRING are constructed, every other universal type (strings included: no
#   constructed strings) is primitive; the other form is refused.
# - length: definite only (0x80, indefinite, is BER), minimal (short form below 128; the long
#   form without leading zero octets), at most 4 length octets (0xFF is reserved anyway).
# - bounds: every value ends inside the enclosing ``end`` (itself inside the buffer);
#   :func:`read_exact` also refuses trailing octets after the element.
# - bounded work: :func:`read_tlv` reads one header and never recurses; :func:`children`
#   frames at most ``limit`` elements; :func:`walk` descends at most ``max_depth`` levels and
#   frames at most ``max_elements`` elements in all, without recursion.
#
# Every failure is a :class:`DERError`, whatever the bytes.

#: default element budget of :func:`children` (per call) and :func:`walk` (in all)
MAX_ELEMENTS = 1 << 20
#: default nesting limit of :func:`walk` (the outermost element is at depth 0)
MAX_DEPTH = 64
_MAX_LENGTH_OCTETS = 4
_MAX_OID_ARC_OCTETS = 32  # 224 bits: UUID arcs (2.25.x, 128 bits) take 19 octets


def _tag_problem(tag: int) -> str | None:
    number = tag & 0x1F
    if number == 0x1F:
        return "DER: high tag numbers (multi-octet identifiers) are not supported"
    if tag & 0xC0:  # application, context-specific, private: either form
        return None
    if number in (0, 14, 15):
        return f"DER: universal tag number {number} is not allowed" + (
            " (end-of-contents is BER only)" if number == 0 else "")
    constructed = bool(tag & 0x20)
    if constructed != (number in (8, 11, 16, 17, 29)):
        return (f"DER: universal type {number} must be "
                f"{'primitive' if constructed else 'constructed'} (tag 0x{tag:02x})")
    return None


#: tag octet -> why DER refuses it, or None
_TAG_PROBLEM: tuple[str | None, ...] = tuple(_tag_problem(t) for t in range(256))


def read_tlv(buf: bytes, pos: int, end: int | None = None) -> tuple[int, int, int]:
    """Frame the TLV at ``buf[pos:end]``: return ``(tag, value_start, value_end)``.

    ``buf`` is bytes, bytearray or memoryview; ``end`` defaults to ``len(buf)``. Raises
    :class:`DERError` on anything the rules above refuse.
    """
    n = len(buf)
    if end is None:
        end = n
    elif end > n:
        raise DERError(f"DER: end {end} is past the end of the {n}-octet buffer")
    if pos < 0:
        raise DERError(f"DER: negative position {pos}")
    if pos + 2 > end:
        raise DERError("DER truncated: no room for tag and length")
    tag = buf[pos]
    problem = _TAG_PROBLEM[tag]
    if problem is not None:
        raise DERError(problem)
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        nb = first & 0x7F
        if nb == 0:
            raise DERError("DER: indefinite length is not DER")
        if nb > _MAX_LENGTH_OCTETS:
            raise DERError(f"DER: {nb} length octets (at most {_MAX_LENGTH_OCTETS} are read)")
        if pos + nb > end:
            raise DERError("DER truncated: in the length octets")
        length = int.from_bytes(buf[pos:pos + nb], "big")
        if length < 0x80 or (length.bit_length() + 7) >> 3 != nb:
            raise DERError("DER: length not in its shortest form")
        pos += nb
    if pos + length > end:
        raise DERError("DER truncated: value runs past the end")
    return tag, pos, pos + length


def expect(buf: bytes, pos: int, tag: int, end: int | None = None, what: str = "element") -> tuple[int, int]:
    """:func:`read_tlv` that requires ``tag``; returns ``(value_start, value_end)``."""
    t, s, e = read_tlv(buf, pos, end)
    if t != tag:
        raise DERError(f"DER: expected tag 0x{tag:02x} for {what}, found 0x{t:02x}")
    return s, e


def read_exact(buf: bytes, tag: int | None = None, what: str = "element") -> tuple[int, int, int]:
    """The one TLV that is all of ``buf`` (no trailing octets), optionally of tag ``tag``:
    ``(tag, value_start, value_end)``."""
    t, s, e = read_tlv(buf, 0)
    if tag is not None and t != tag:
        raise DERError(f"DER: expected tag 0x{tag:02x} for {what}, found 0x{t:02x}")
    if e != len(buf):
        raise DERError(f"DER: {len(buf) - e} octets of trailing data after the {what}")
    return t, s, e


def children(buf: bytes, start: int, end: int, limit: int = MAX_ELEMENTS):
    """Yield ``(tag, value_start, value_end, tlv_start)`` for each element in
    ``buf[start:end]``; raise :class:`DERError` after ``limit`` elements."""
    pos = start
    count = 0
    while pos < end:
        count += 1
        if count > limit:
            raise DERError(f"DER: more than {limit} elements")
        t, s, e = read_tlv(buf, pos, end)
        yield t, s, e, pos
        pos = e


def walk(buf: bytes, start: int = 0, end: int | None = None, *, max_depth: int = MAX_DEPTH,
         max_elements: int = MAX_ELEMENTS):
    """Yield ``(depth, tag, value_start, value_end, tlv_start)`` for every element in
    ``buf[start:end]`` and, depth first, inside every constructed one (document order; the
    elements of ``buf[start:end]`` are at depth 0). Primitive values (OCTET/BIT STRINGs
    holding DER included) are not entered. Iterative: :class:`DERError` past ``max_depth``
    levels or ``max_elements`` elements, never a RecursionError."""
    if end is None:
        end = len(buf)
    stack = [[start, end]]
    count = 0
    while stack:
        frame = stack[-1]
        pos, lim = frame
        if pos >= lim:
            stack.pop()
            continue
        depth = len(stack) - 1
        if depth > max_depth:
            raise DERError(f"DER: nested more than {max_depth} levels deep")
        count += 1
        if count > max_elements:
            raise DERError(f"DER: more than {max_elements} elements")
        tag, s, e = read_tlv(buf, pos, lim)
        frame[0] = e
        yield depth, tag, s, e, pos
        if tag & 0x20:
            stack.append([s, e])


def check(buf: bytes, *, max_depth: int = MAX_DEPTH, max_elements: int = MAX_ELEMENTS) -> int:
    """Check that ``buf`` is exactly one DER element, framed correctly at every level of
    constructed nesting (within the limits); return its tag."""
    tag, _, _ = read_exact(buf)
    for _ in walk(buf, max_depth=max_depth, max_elements=max_elements):
        pass
    return tag


#: OBJECT IDENTIFIER contents -> dotted string, for the OIDs seen most (bounded)
_OID_CACHE: dict[bytes, str] = {}


def decode_oid(content: bytes) -> str:
    """Dotted form of OBJECT IDENTIFIER contents. DER: no empty OID, no subidentifier with a
    leading 0x80 octet (non-minimal), none left open at the end; subidentifiers of more than
    32 octets are refused (no unbounded integer-to-text work)."""
    key = content if type(content) is bytes else bytes(content)
    s = _OID_CACHE.get(key)
    if s is not None:
        return s
    if not key or key[-1] & 0x80:
        raise DERError("DER: malformed OBJECT IDENTIFIER")
    arcs: list[int] = []
    v = 0
    width = 0
    for b in key:
        if width == 0 and b == 0x80:
            raise DERError("DER: OBJECT IDENTIFIER subidentifier not in its shortest form")
        width += 1
        if width > _MAX_OID_ARC_OCTETS:
            raise DERError(f"DER: OBJECT IDENTIFIER subidentifier longer than {_MAX_OID_ARC_OCTETS} octets")
        v = (v << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(v)
            v = 0
            width = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    s = ".".join(str(a) for a in head + arcs[1:])
    if len(_OID_CACHE) < 4096 and len(key) <= 64:
        _OID_CACHE[key] = s
    return s


def decode_integer(content: bytes) -> int:
    """The value of INTEGER contents (two's complement; not checked for minimal encoding)."""
    if not content:
        raise DERError("DER: empty INTEGER")
    return int.from_bytes(content, "big", signed=True)


def tbs_of(cert_der: bytes) -> bytes:
    """The tbsCertificate TLV of a certificate (or CRL: tbsCertList)."""
    s, e = expect(cert_der, 0, SEQUENCE, what="Certificate")
    _, _, te = read_tlv(cert_der, s, e)
    return bytes(cert_der[s:te])


def cert_fields(cert_der: bytes) -> dict[str, bytes]:
    """Exact DER of some fields of a certificate: ``subject``, ``issuer``, ``spki``,
    ``spk`` (the subjectPublicKey BIT STRING contents, without the unused-bits octet)."""
    s, e = expect(cert_der, 0, SEQUENCE, what="Certificate")
    ts, te = expect(cert_der, s, SEQUENCE, e, "tbsCertificate")
    fields = [(t, a, b, st) for t, a, b, st in children(cert_der, ts, te, 16)]
    if fields and fields[0][0] == ctx(0):
        fields = fields[1:]  # version
    # serial, signature, issuer, validity, subject, subjectPublicKeyInfo
    if len(fields) < 6:
        raise DERError("DER: certificate has too few fields")
    _, _, iend, istart = fields[2]
    _, _, send, sstart = fields[4]
    _, ks, kend, kstart = fields[5]
    ps = list(children(cert_der, ks, kend, 2))
    if len(ps) != 2 or ps[1][0] != BIT_STRING:
        raise DERError("DER: malformed subjectPublicKeyInfo")
    return {
        "issuer": bytes(cert_der[istart:iend]),
        "subject": bytes(cert_der[sstart:send]),
        "spki": bytes(cert_der[kstart:kend]),
        "spk": bytes(cert_der[ps[1][1] + 1:ps[1][2]]),
    }


# --- signature algorithms -----------------------------------------------------------

_HASH_NAMES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
_HASH_OIDS = {"sha1": "1.3.14.3.2.26", "sha256": "2.16.840.1.101.3.4.2.1",
              "sha384": "2.16.840.1.101.3.4.2.2", "sha512": "2.16.840.1.101.3.4.2.3"}
_ECDSA_OIDS = {"sha256": "1.2.840.10045.4.3.2", "sha384": "1.2.840.10045.4.3.3",
               "sha512": "1.2.840.10045.4.3.4"}
_RSA_OIDS = {"sha256": "1.2.840.113549.1.1.11", "sha384": "1.2.840.113549.1.1.12",
             "sha512": "1.2.840.113549.1.1.13"}
_NULL = b"\x05\x00"
#: SM2 signature with SM3 (GM/T 0006); its AlgorithmIdentifier has no parameters, as OpenSSL writes it
SM2_WITH_SM3 = "1.2.156.10197.1.501"  # = unica.sm2.SM2_WITH_SM3_OID (der stays below every other module)


def hash_alg_id(name: str) -> bytes:
    """AlgorithmIdentifier of a hash, with NULL parameters (as RFC 4055 / OpenSSL write it)."""
    return seq(oid(_HASH_OIDS[name]), _NULL)


class SignatureScheme:
    """How to sign with one key: the DER AlgorithmIdentifier and the ``sign`` call.

    ``hash_alg`` is a ``cryptography`` hash instance (SHA256/384/512) or None for EdDSA;
    ``rsa_pss`` picks RSASSA-PSS (salt length = hash length, MGF1 with the same hash).
    Only ``key.sign`` and ``key.public_key`` are used, so token keys work unchanged.
    """

    __slots__ = ("key", "algorithm_identifier", "_sign")

    def __init__(self, key, hash_alg: hashes.HashAlgorithm | None = None, *, rsa_pss: bool = False):
        self.key = key
        if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
            if hash_alg is not None:
                raise ValueError("EdDSA keys sign without a separate hash; pass hash_alg=None")
            self.algorithm_identifier = seq(oid("1.3.101.112" if isinstance(key, ed25519.Ed25519PrivateKey)
                                                else "1.3.101.113"))
            self._sign = key.sign
            return
        if type(key).__module__ == "unica.sm2" or getattr(type(key), "_unica_sm2", False):  # SM2 with SM3 (GM/T 0006)
            if hash_alg is not None or rsa_pss:
                raise ValueError("SM2 keys sign with SM3 fixed by the scheme; pass hash_alg=None")
            self.algorithm_identifier = seq(oid(SM2_WITH_SM3))
            self._sign = key.sign  # with the default signer ID (GM/T 0009)
            return
        if hash_alg is None:
            hash_alg = hashes.SHA256()
        name = hash_alg.name
        if name not in _HASH_NAMES:
            raise ValueError(f"hash {name} is not allowed for signing (use sha256, sha384 or sha512)")
        if isinstance(key, ec.EllipticCurvePrivateKey):
            if rsa_pss:
                raise ValueError("rsa_pss is only for RSA keys")
            self.algorithm_identifier = seq(oid(_ECDSA_OIDS[name]))
            algo = ec.ECDSA(hash_alg)
            self._sign = lambda data: key.sign(data, algo)
        elif isinstance(key, rsa.RSAPrivateKey):
            if rsa_pss:
                h = hash_alg_id(name)
                params = seq(
                    tlv(ctx(0), h),
                    tlv(ctx(1), seq(oid("1.2.840.113549.1.1.8"), h)),
                    tlv(ctx(2), integer(hash_alg.digest_size)),
                )
                self.algorithm_identifier = seq(oid("1.2.840.113549.1.1.10"), params)
                pad = padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
            else:
                self.algorithm_identifier = seq(oid(_RSA_OIDS[name]), _NULL)
                pad = padding.PKCS1v15()
            self._sign = lambda data: key.sign(data, pad, hash_alg)
        else:
            raise UnsupportedKeyType(f"cannot sign with a {type(key).__name__}: "
                                     "expected an EC, RSA, Ed25519, Ed448 or SM2 private key")

    def sign(self, data: bytes) -> bytes:
        return self._sign(data)

    def signed(self, tbs: bytes) -> bytes:
        """DER of ``SEQUENCE { tbs, algorithmIdentifier, BIT STRING signature }``."""
        return seq(tbs, self.algorithm_identifier, bit_string(self.sign(tbs)))
