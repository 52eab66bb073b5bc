"""A strict DER reader for TimeStampReq (RFC 3161 2.4.1), written for the hot path.

    TimeStampReq ::= SEQUENCE {
       version          INTEGER { v1(1) },
       messageImprint   SEQUENCE { hashAlgorithm AlgorithmIdentifier, hashedMessage OCTET STRING },
       reqPolicy        TSAPolicyId OPTIONAL,
       nonce            INTEGER OPTIONAL,
       certReq          BOOLEAN DEFAULT FALSE,
       extensions       [0] IMPLICIT Extensions OPTIONAL }

Definite lengths only, in their shortest form, nothing after the outer SEQUENCE, the fields in
order; anything else raises :class:`BadRequest`. A request is a few hundred bytes and asn1crypto's
lazy parsing of it cost more than the token's signature; this reads it in one pass and keeps
what the token copies (the nonce's content octets, copied back exactly) as bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BadRequest", "ParsedRequest", "parse_request"]


class BadRequest(ValueError):
    """Not a DER TimeStampReq v1 (the message says what is wrong)."""


@dataclass(frozen=True)
class ParsedRequest:
    #: content octets of the digest algorithm's OID
    alg_oid: bytes
    #: the algorithm parameters were absent or NULL
    params_ok: bool
    imprint: bytes
    #: content octets of reqPolicy's OID (None: no policy asked for)
    policy_oid: bytes | None
    #: content octets of the nonce INTEGER (None: no nonce)
    nonce: bytes | None
    cert_req: bool
    has_extensions: bool


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at ``pos`` (which must end by ``end``)."""
    if pos + 2 > end:
        raise BadRequest("truncated element")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise BadRequest("high tag numbers are not used in a TimeStampReq")
    first = buf[pos + 1]
    if first < 0x80:
        start, length = pos + 2, first
    elif first == 0x80:
        raise BadRequest("indefinite length (BER) is not DER")
    else:
        n = first & 0x7F
        if n > 3 or pos + 2 + n > end:
            raise BadRequest("bad length")
        raw = buf[pos + 2: pos + 2 + n]
        if raw[0] == 0:
            raise BadRequest("length not in its shortest form")
        length = int.from_bytes(raw, "big")
        if length < 0x80:
            raise BadRequest("length not in its shortest form")
        start = pos + 2 + n
    stop = start + length
    if stop > end:
        raise BadRequest("element runs past its container")
    return tag, start, stop


def _oid_ok(c: bytes) -> bool:
    return bool(c) and c[-1] < 0x80 and c[0] != 0x80 and all(
        not (c[i] == 0x80 and (i == 0 or c[i - 1] < 0x80)) for i in range(len(c)))


def _integer_ok(c: bytes) -> bool:
    return bool(c) and not (len(c) > 1 and ((c[0] == 0 and c[1] < 0x80) or (c[0] == 0xFF and c[1] >= 0x80)))


def parse_request(buf: bytes) -> ParsedRequest:
    end = len(buf)
    tag, s, e = _tlv(buf, 0, end)
    if tag != 0x30 or e != end:
        raise BadRequest("not a single DER SEQUENCE")
    tag, vs, ve = _tlv(buf, s, e)
    if tag != 0x02 or not _integer_ok(buf[vs:ve]):
        raise BadRequest("no version")
    if buf[vs:ve] != b"\x01":
        raise BadRequest(f"unsupported TimeStampReq version {int.from_bytes(buf[vs:ve], 'big', signed=True)}")
    # messageImprint
    tag, ms, me = _tlv(buf, ve, e)
    if tag != 0x30:
        raise BadRequest("no messageImprint")
    tag, as_, ae = _tlv(buf, ms, me)
    if tag != 0x30:
        raise BadRequest("no hashAlgorithm")
    tag, os_, oe = _tlv(buf, as_, ae)
    if tag != 0x06 or not _oid_ok(buf[os_:oe]):
        raise BadRequest("bad hashAlgorithm OID")
    params_ok = True
    if oe != ae:
        tag, ps, pe = _tlv(buf, oe, ae)
        if pe != ae:
            raise BadRequest("extra data in hashAlgorithm")
        params_ok = tag == 0x05 and ps == pe
    tag, hs, he = _tlv(buf, ae, me)
    if tag != 0x04 or he != me:
        raise BadRequest("bad hashedMessage")
    pos = me
    policy = nonce = None
    cert_req = has_ext = False
    order = 0  # fields must come in order, each at most once
    while pos < e:
        tag, cs, ce = _tlv(buf, pos, e)
        content = buf[cs:ce]
        if tag == 0x06 and order < 1:
            if not _oid_ok(content):
                raise BadRequest("bad reqPolicy")
            policy, order = content, 1
        elif tag == 0x02 and order < 2:
            if not _integer_ok(content):
                raise BadRequest("bad nonce")
            nonce, order = content, 2
        elif tag == 0x01 and order < 3:
            if content not in (b"\xff", b"\x00"):
                raise BadRequest("bad certReq")
            cert_req, order = content == b"\xff", 3
        elif tag == 0xA0 and order < 4:
            has_ext, order = True, 4
        else:
            raise BadRequest("unexpected field in TimeStampReq")
        pos = ce
    return ParsedRequest(buf[os_:oe], params_ok, buf[hs:he], policy, nonce, cert_req, has_ext)
