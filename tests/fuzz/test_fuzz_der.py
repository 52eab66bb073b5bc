"""The bounded DER reader of unica.der (used by the OCSP request parser and the CRL/OCSP
writers on certificates): every primitive on random buffers and positions.

Contract: a value or :class:`DERError` -- never IndexError, never unbounded work.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import budget, cached, der_inputs, feed
from unica import der


def _walk(buf: bytes, pos: int, end: int | None):
    t, s, e = der.read_tlv(buf, pos, end)
    assert pos + 2 <= s <= e <= (len(buf) if end is None else end)
    kids = list(der.children(buf, s, e, 64)) if t & 0x20 else []
    for tag, vs, ve, start in kids:
        assert s <= start < vs <= ve <= e
    if t == der.OID:
        der.decode_oid(bytes(buf[s:e]))
    if t == der.INTEGER:
        der.decode_integer(bytes(buf[s:e]))
    return t, len(kids)


@budget(1000)
@given(data=st.data())
def test_der_primitives(seeds, data):
    buf = data.draw(cached("der-prims", lambda: st.one_of(
        der_inputs(seeds.certs + seeds.ocsp_requests + seeds.crls), st.binary(max_size=64)))) or b"\x00"
    pos = data.draw(st.integers(0, len(buf)))
    end = data.draw(st.one_of(st.none(), st.integers(0, len(buf))))
    res, err = feed("ca.der primitives", _walk, buf, pos, end)
    if err is not None:
        assert isinstance(err, der.DERError), err


def test_decode_oid_huge_arc_is_typed():
    """An OID arc of thousands of digits (int-to-str limit) from parse_request's view."""
    from unica.ocsp.request import MalformedRequest, parse_request

    body = der.seq(der.seq(der.seq(der.seq(der.seq(der.seq(der.tlv(der.OID, b"\xff" * 3000 + b"\x01")),
                                                   der.octet_string(b"a" * 20), der.octet_string(b"b" * 20),
                                                   der.integer(5))))))
    _, err = feed("ocsp.parse_request", parse_request, body)
    assert isinstance(err, MalformedRequest), err
