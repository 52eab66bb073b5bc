"""The one DER reader (:mod:`unica.der`) and the CMS layer built on it (:mod:`unica.verify._der`),
tested against asn1crypto.

Differential contract, on valid DER (certificates, a CRL, an OCSP response, CMS made by pyHanko
and OpenSSL), BER (``openssl cms -stream``), mutants of those (truncation, length tampering,
tag swaps, splices), generated trees with defects (non-minimal and indefinite lengths,
high tag numbers, wrong forms), huge declared lengths, deep nesting and random bytes:

- where the reader accepts (``der.check``: one element, framed at every level), asn1crypto's
  strict parse (``asn1crypto.core.load(data, strict=True)``, then ``asn1crypto.parser`` on
  every constructed value) accepts too, with the same tag / length tree, and every header is
  canonical DER (the header ``asn1crypto.parser.emit`` writes, no indefinite length, low tag
  numbers, X.690's forms of the universal types, within the depth/element limits); OIDs and
  INTEGERs decode to the same values;
- conversely, where asn1crypto accepts and every header is canonical DER, the reader accepts;
- the reader and the CMS layer raise :class:`unica.der.DERError` and nothing else, and each
  input takes bounded time (a SIGALRM guard, plus a wall-clock bound).
"""

from __future__ import annotations

import time

import asn1crypto.core
import asn1crypto.parser
import pytest
from asn1crypto import cms as acms
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import budget, cached, mutated, time_guard
from unica import der
from unica.errors import MalformedInput
from unica.verify import _der

#: wall-clock bound for one input (inputs are at most a few tens of KiB); the guard catches hangs
SECONDS_PER_INPUT = 1.0
_UNIVERSAL_CONSTRUCTED = {8, 11, 16, 17, 29}


# --- the two sides ---------------------------------------------------------------------------


def _timed(fn, *args, **kw):
    """(result, DERError or None), under the hang guard and the wall-clock bound; any other
    exception propagates (and fails the test)."""
    t0 = time.perf_counter()
    try:
        with time_guard(5.0, name=getattr(fn, "__name__", "reader")):
            return fn(*args, **kw), None
    except der.DERError as e:
        assert str(e), "DERError without a message"
        return None, e
    finally:
        elapsed = time.perf_counter() - t0
        assert elapsed < SECONDS_PER_INPUT, f"{fn.__name__} took {elapsed:.2f} s on one input"


def reader_tree(data: bytes) -> list[tuple[int, int, int]]:
    """(depth, tag octet, content length) of every element, by the reader; DERError if it refuses."""
    der.check(data)
    return [(d, t, e - s) for d, t, s, e, _ in der.walk(data)]


class Refused(Exception):
    """asn1crypto did not accept the input."""


def asn1_tree(data: bytes) -> tuple[list[tuple[int, int, int]], bool, list[tuple[int, bytes]]]:
    """asn1crypto's view: (tree as in :func:`reader_tree`, whether every header is canonical DER
    within the reader's limits, [(tag octet, contents)] of the primitive elements).
    Raises :class:`Refused` when asn1crypto refuses the input."""
    try:
        cls, _, number, _, _, _ = asn1crypto.parser.parse(data, strict=True)
        if cls == 0 or number in asn1crypto.core._UNIVERSAL_SPECS:
            asn1crypto.core.load(data, strict=True)  # the strict parse the contract names
        # (load has no class for other tag numbers, whatever the class: [0] IMPLICIT ... is
        # then framed by asn1crypto's parser alone)
    except (ValueError, TypeError, OverflowError) as e:
        raise Refused(str(e)) from None
    tree: list[tuple[int, int, int]] = []
    prims: list[tuple[int, bytes]] = []
    canonical = True
    stack = [(data, 0, 0)]  # (bytes holding elements, position, depth)
    while stack:
        buf, pos, depth = stack.pop()
        if pos >= len(buf):
            continue
        try:
            cls, method, number, header, contents, trailer = asn1crypto.parser.parse(buf[pos:])
            if cls == 0:
                asn1crypto.core.load(header + contents + trailer, strict=True)
        except (ValueError, TypeError, OverflowError) as e:
            raise Refused(str(e)) from None
        stack.append((buf, pos + len(header) + len(contents) + len(trailer), depth))
        tag = (cls << 6) | (method << 5) | min(number, 31)
        tree.append((depth, tag, len(contents)))
        if (trailer or number >= 31 or header + contents != asn1crypto.parser.emit(cls, method, number, contents)
                or depth > der.MAX_DEPTH or len(tree) > der.MAX_ELEMENTS
                or (cls == 0 and (number in (0, 14, 15) or bool(method) != (number in _UNIVERSAL_CONSTRUCTED)))):
            canonical = False
        if method:
            stack.append((contents, 0, depth + 1))
        else:
            prims.append((tag, contents))
    return tree, canonical, prims


def differential(data: bytes) -> str:
    """Compare the reader with asn1crypto on ``data``; return the outcome (for the assertions
    on the share of each)."""
    tree, err = _timed(reader_tree, data)
    try:
        want, canonical, prims = asn1_tree(data)
    except Refused as e:
        assert err is not None, f"the reader accepts what asn1crypto refuses ({e}): {data.hex()}"
        return "both refuse"
    if err is None:
        assert tree == want, f"tag/length trees differ on {data.hex()}"
        assert canonical, f"the reader accepts a header that is not canonical DER: {data.hex()}"
        for tag, contents in prims:
            if tag == der.OID:
                oid, oerr = _timed(der.decode_oid, contents)
                if oerr is None:
                    assert oid == asn1crypto.core.ObjectIdentifier.load(b"\x06" + der.enc_len(len(contents))
                                                                       + contents).dotted
            elif tag == der.INTEGER and contents:
                assert _timed(der.decode_integer, contents)[0] == asn1crypto.core.Integer(contents=contents).native
        return "both accept"
    assert not canonical, f"the reader refuses canonical DER that asn1crypto accepts ({err}): {data.hex()}"
    return "only asn1crypto accepts (not DER)"


# --- inputs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from tests.verify.pki import DAY, NOW, PKI, make_crl, make_ocsp, openssl_cms_sign, pyhanko_sign

    pki = PKI()
    enc = serialization.Encoding.DER
    certs = [i.cert.public_bytes(enc) for i in (pki.root, pki.inter, pki.signer, pki.tsa, pki.responder)]
    crl = make_crl(pki.inter, [(5, NOW - DAY, x509.ReasonFlags.key_compromise), (7, NOW - 2 * DAY)]).public_bytes(enc)
    ocsp = make_ocsp(pki.signer.cert, pki.inter)
    d = tmp_path_factory.mktemp("der-cms")
    data = b"unica DER differential test\n" * 3
    cms = [pyhanko_sign(pki, pki.signer, data, detached=True),  # CAdES B-T: a time-stamp token inside
           pyhanko_sign(pki, pki.signer, data, detached=False, tsa=False),
           openssl_cms_sign(d, pki, pki.signer, data, detached=True, cades=True)]
    ber = openssl_cms_sign(d, pki, pki.signer, data, detached=False, stream=True)  # indefinite lengths
    archival = der.seq(der.tlv(der.ctx(0), der.seq(crl)), der.tlv(der.ctx(1), der.seq(ocsp)))
    return {"certs": certs, "crl": crl, "ocsp": ocsp, "cms": cms, "ber": ber, "archival": archival,
            "all": certs + [crl, ocsp] + cms + [ber]}


_PRIM_TAGS = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0A, 0x0C, 0x13, 0x16, 0x17, 0x18, 0x1E,
              0x80, 0x81, 0x82, 0x86, 0x87, 0x9E, 0x41, 0xC3]
_CONS_TAGS = [0x30, 0x30, 0x30, 0x31, 0xA0, 0xA1, 0xA3, 0xBE, 0x61, 0xE2, 0x28]
#: tags DER refuses: primitive SEQUENCE/SET, constructed strings/INTEGER, end-of-contents,
#: unassigned universal numbers, the high-tag-number escape
_BAD_TAGS = [0x10, 0x11, 0x24, 0x23, 0x22, 0x00, 0x20, 0x0E, 0x0F, 0x2E, 0x1F, 0x3F, 0x9F, 0xBF]
_HOW = st.sampled_from(["min"] * 12 + ["long", "zero-padded", "indefinite", "high-tag", "bad-tag", "extra"])


def _enc(tag: int, content: bytes, how: str, draw) -> bytes:
    n = len(content)
    if how == "long":  # long form for a short length (non-minimal)
        return bytes((tag, 0x81 if n < 0x100 else 0x82)) + n.to_bytes(1 if n < 0x100 else 2, "big") + content
    if how == "zero-padded":
        return bytes((tag, 0x84)) + n.to_bytes(4, "big") + content
    if how == "indefinite":
        return bytes((tag | 0x20, 0x80)) + content + b"\x00\x00"
    if how == "high-tag":  # the multi-octet identifier, for a number above or below 31
        number = draw(st.sampled_from([5, 16, 31, 40, 200, 1000]))
        ident = bytes((tag & 0xE0 | 0x1F,)) + (bytes((0x80 | number >> 7, number & 0x7F)) if number > 127
                                               else bytes((number,)))
        return ident + der.enc_len(n) + content
    if how == "bad-tag":
        return bytes((draw(st.sampled_from(_BAD_TAGS)),)) + der.enc_len(n) + content
    if how == "extra":  # trailing garbage after the element
        return der.tlv(tag, content) + draw(st.binary(min_size=1, max_size=3))
    return der.tlv(tag, content)


def _how(draw) -> str:
    return draw(_HOW) if draw(st.integers(0, 5)) == 0 else "min"


@st.composite
def _primitive(draw) -> bytes:
    tag = draw(st.sampled_from(_PRIM_TAGS))
    content = draw(st.sampled_from([b"", b"\x00", b"\x2a\x86\x48\x86\xf7\x0d", b"\x01\x00\x01"])
                   if draw(st.booleans()) else st.binary(max_size=140))
    return _enc(tag, content, _how(draw), draw)


@st.composite
def _constructed(draw, kids) -> bytes:
    return _enc(draw(st.sampled_from(_CONS_TAGS)), b"".join(draw(st.lists(kids, max_size=4))), _how(draw), draw)


#: a random element: primitive, or constructed around random elements; mostly canonical DER,
#: each element with a small chance of one encoding defect
DER_TREES = st.recursive(_primitive(), _constructed, max_leaves=30)


_HUGE_LENGTHS = [b"\x84\xff\xff\xff\xff", b"\x84\x7f\xff\xff\xff", b"\x84\x00\x00\x00\x05", b"\x83\xff\xff\xff",
                 b"\x85\x01\x00\x00\x00\x00", b"\x88\xff\xff\xff\xff\xff\xff\xff\xff", b"\x89" + b"\xff" * 9,
                 b"\xff", b"\xfe", b"\x80"]


@st.composite
def huge_lengths(draw) -> bytes:
    """A header declaring far more (or more length octets) than there is, at the top or inside."""
    head = bytes((draw(st.sampled_from([0x30, 0x04, 0x02, 0xA0, 0x31])),)) + draw(st.sampled_from(_HUGE_LENGTHS))
    body = head + draw(st.binary(max_size=20))
    where = draw(st.sampled_from(["top", "inside", "after"]))
    if where == "inside":  # the outer length is honest, the inner one is not
        return der.tlv(0x30, der.integer(1) + body)
    if where == "after":  # a valid element, then the lying header as trailing data
        return der.seq(der.integer(1)) + body
    return body


@st.composite
def deep_nesting(draw) -> bytes:
    """SEQUENCEs (or [0]s) nested up to 3000 deep: definite (DER past the reader's depth
    limit), indefinite (BER), or declared one level too long."""
    levels = draw(st.one_of(st.integers(1, der.MAX_DEPTH + 3), st.integers(der.MAX_DEPTH - 2, 3000)))
    tag = draw(st.sampled_from([0x30, 0xA0, 0x31]))
    how = draw(st.sampled_from(["definite", "definite", "indefinite", "lie"]))
    if how == "indefinite":
        return bytes((tag, 0x80)) * levels + b"\x05\x00" + b"\x00\x00" * levels
    lie_at = draw(st.integers(0, levels - 1)) if how == "lie" else -1
    body = b"\x05\x00"
    for level in range(levels):
        # "lie": one level declares one octet less than it holds; its last octet then
        # follows it as a (broken) sibling
        body = bytes((tag,)) + der.enc_len(len(body) - 1) + body if level == lie_at else der.tlv(tag, body)
    return body


def inputs(seeds):
    return cached(("test_der inputs", id(seeds)), lambda: st.one_of(
        st.sampled_from(seeds["all"]),
        mutated(seeds["all"], max_ops=3), mutated(seeds["all"], max_ops=3),
        DER_TREES, DER_TREES,
        huge_lengths(), deep_nesting(),
        st.binary(max_size=64),
    ))


# --- the differential tests -------------------------------------------------------------------


OUTCOMES: dict[str, int] = {}


@budget(1500)
@given(data=st.data())
def test_reader_agrees_with_asn1crypto(seeds, data):
    buf = data.draw(inputs(seeds))
    outcome = differential(buf)
    OUTCOMES[outcome] = OUTCOMES.get(outcome, 0) + 1


def test_outcomes_were_all_exercised():
    """The differential above saw inputs of every kind (it ran first: pytest keeps file order)."""
    if not OUTCOMES:
        pytest.skip("the differential test did not run in this session")
    assert set(OUTCOMES) == {"both accept", "both refuse", "only asn1crypto accepts (not DER)"}, OUTCOMES
    assert min(OUTCOMES.values()) >= 50, OUTCOMES


def test_seeds_are_der_and_ber_is_refused(seeds):
    for d in seeds["certs"] + [seeds["crl"], seeds["ocsp"]] + seeds["cms"]:
        assert differential(d) == "both accept"
    assert differential(seeds["ber"]) == "only asn1crypto accepts (not DER)"
    with pytest.raises(der.DERError, match="indefinite"):
        der.read_tlv(seeds["ber"], 0)


@budget(400)
@given(data=st.data())
def test_random_positions_and_ends(seeds, data):
    """read_tlv / children / walk at any position and end of a seed or mutant: a frame inside
    the bounds, or DERError."""
    buf = data.draw(inputs(seeds)) or b"\x00"
    pos = data.draw(st.integers(-2, len(buf) + 2))
    end = data.draw(st.one_of(st.none(), st.integers(0, len(buf) + 2)))
    frame, err = _timed(der.read_tlv, buf, pos, end)
    if err is None:
        t, s, e = frame
        assert 0 <= pos and pos + 2 <= s <= e <= (len(buf) if end is None else end)
        kids, kerr = _timed(lambda: list(der.children(buf, s, e, 64)))
        if kerr is None:
            assert all(s <= st_ < vs <= ve <= e for _, vs, ve, st_ in kids)
    _timed(lambda: list(der.walk(buf, max(pos, 0), end, max_depth=8, max_elements=500)))


# --- the CMS layer ---------------------------------------------------------------------------


def _compare_signed_data(raw: _der.SignedDataRaw, data: bytes) -> bool:
    """The CMS layer's reading equals asn1crypto's; False when asn1crypto cannot read the
    fields (damaged content the CMS layer slices without decoding)."""
    void = asn1crypto.core.Void
    try:
        sd = acms.ContentInfo.load(data, strict=True)["content"]
        eci = sd["encap_content_info"]
        certs = sd["certificates"]
        want = {
            "type": eci["content_type"].dotted,
            "econtent": None if isinstance(eci["content"], void) else eci["content"].contents,
            "certs": [] if isinstance(certs, void) else [c.dump() for c in certs if c.name == "certificate"],
            "signers": [(si["sid"].name, si["digest_algorithm"]["algorithm"].dotted,
                         si["signature_algorithm"]["algorithm"].dotted, si["signature"].native,
                         None if isinstance(si["signed_attrs"], void) else si["signed_attrs"].dump())
                        for si in sd["signer_infos"]],
        }
    except (ValueError, TypeError, KeyError, OverflowError):
        return False
    got = {
        "type": raw.econtent_type, "econtent": raw.econtent, "certs": raw.certs,
        "signers": [("issuer_and_serial_number" if s.sid_kind == "issuer_serial" else "subject_key_identifier",
                     s.digest_oid, s.sig_oid, s.signature, s.signed_attrs) for s in raw.signers],
    }
    assert got == want
    return True


def test_cms_layer_reads_the_seeds_as_asn1crypto_does(seeds):
    for d in seeds["cms"]:
        raw = _der.parse_signed_data_der(d)
        assert _compare_signed_data(raw, d)
        si = raw.signers[0]
        assert _der.object_identifier(si.attrs["1.2.840.113549.1.9.3"][0]) == raw.econtent_type
        assert len(_der.octet_string(si.attrs["1.2.840.113549.1.9.4"][0])) == 32
    ts = _der.parse_signed_data_der(seeds["cms"][0]).signers[0].unsigned["1.2.840.113549.1.9.16.2.14"][0]
    assert _der.parse_signed_data_der(ts).econtent_type == "1.2.840.113549.1.9.16.1.4"  # TSTInfo
    with pytest.raises(der.DERError, match="indefinite"):
        _der.parse_signed_data_der(seeds["ber"])
    crls, ocsps = _der.revocation_archival(seeds["archival"])
    assert crls == [seeds["crl"]] and ocsps == [seeds["ocsp"]]
    crls, ocsps = _der.revocation_values(seeds["archival"])
    assert crls == [seeds["crl"]] and ocsps == [_der.wrap_basic_ocsp(seeds["ocsp"])]


@budget(600)
@given(data=st.data())
def test_cms_layer_raises_only_derror(seeds, data):
    """Mutated CMS (and its attribute values): a reading that agrees with asn1crypto where
    asn1crypto can read the fields, or DERError; never IndexError/ValueError/anything else."""
    which = data.draw(st.integers(0, 2))
    if which == 0:
        buf = data.draw(cached(("cms mutants", id(seeds)), lambda: mutated(seeds["cms"], max_ops=3)))
        raw, err = _timed(_der.parse_signed_data_der, buf)
        if err is None:
            _compare_signed_data(raw, buf)
        return
    if which == 1:
        buf = data.draw(cached(("archival mutants", id(seeds)), lambda: mutated([seeds["archival"]], max_ops=3)))
        for fn in (_der.revocation_archival, _der.revocation_values):
            _timed(fn, buf)
        return
    values = [der.octet_string(b"x" * 32), der.oid("1.2.840.113549.1.7.1"), b"\x17\x0d250101120000Z",
              b"\x18\x0f20250101120000Z", b"\x18\x1320250101120000.123Z",
              der.seq(der.seq(der.seq(der.seq(der.oid("2.16.840.1.101.3.4.2.1")), der.octet_string(b"h" * 32))))]
    buf = data.draw(cached("attr mutants", lambda: st.one_of(mutated(values, max_ops=2), st.binary(max_size=40))))
    for fn in (_der.octet_string, _der.object_identifier):
        _timed(fn, buf)
    when, err = _timed(_der.time, buf)
    if err is None:  # where asn1crypto reads the time too, the same instant
        try:
            want = asn1crypto.core.load(buf, strict=True).native
        except (ValueError, TypeError, KeyError, OverflowError):
            want = None
        if want is not None:
            assert when == want, (buf, when, want)
    for v2 in (False, True):
        _timed(_der.ess_cert_id, buf, v2)


# --- the rules, one by one --------------------------------------------------------------------


@pytest.mark.parametrize("data, why", [
    (b"\x30\x80\x05\x00\x00\x00", "indefinite"),
    (b"\x04\x81\x03abc", "shortest form"),            # long form for a length below 128
    (b"\x04\x82\x00\x81" + b"a" * 129, "shortest form"),  # leading zero length octet
    (b"\x04\x85\x00\x00\x00\x00\x01a", "length octets"),
    (b"\x04\xff", "length octets"),                    # 0xFF is reserved
    (b"\x04\x84\xff\xff\xff\xff", "truncated"),        # huge declared length
    (b"\x04\x05abc", "truncated"),
    (b"\x04", "truncated"),
    (b"\x1f\x81\x00\x00", "high tag"),
    (b"\xbf\x1f\x00", "high tag"),
    (b"\x00\x00", "end-of-contents"),
    (b"\x0e\x00", "universal tag number 14"),
    (b"\x10\x00", "must be constructed"),              # primitive SEQUENCE
    (b"\x24\x03\x04\x01a", "must be primitive"),       # constructed OCTET STRING (BER)
    (b"\x22\x00", "must be primitive"),                # constructed INTEGER
])
def test_reader_refuses(data, why):
    with pytest.raises(der.DERError, match=why):
        der.read_tlv(data, 0)


def test_reader_accepts_canonical_forms():
    assert der.read_tlv(b"\x04\x7f" + b"a" * 127, 0) == (0x04, 2, 129)
    assert der.read_tlv(b"\x04\x81\x80" + b"a" * 128, 0) == (0x04, 3, 131)
    big = b"\x04\x82\x01\x00" + b"a" * 256
    assert der.read_tlv(big, 0) == (0x04, 4, 260)
    assert der.read_tlv(b"\x80\x00", 0) == (0x80, 2, 2)   # [0] IMPLICIT primitive
    assert der.read_tlv(b"\xa0\x00", 0) == (0xA0, 2, 2)   # [0] constructed
    assert der.read_tlv(b"\x5e\x00", 0) == (0x5E, 2, 2)   # [APPLICATION 30] primitive
    assert der.read_exact(b"\x30\x03\x02\x01\x05", 0x30) == (0x30, 2, 5)


def test_bounds_and_trailing_data():
    with pytest.raises(der.DERError, match="trailing"):
        der.read_exact(b"\x05\x00\x00")
    with pytest.raises(der.DERError, match="expected tag 0x30"):
        der.read_exact(b"\x05\x00", 0x30, "thing")
    with pytest.raises(der.DERError, match="past the end"):
        der.read_tlv(b"\x05\x00", 0, 3)
    with pytest.raises(der.DERError, match="negative"):
        der.read_tlv(b"\x05\x00", -2)
    with pytest.raises(der.DERError, match="truncated"):
        der.read_tlv(b"\x30\x02\x05\x00", 0, 3)  # the value runs past the caller's end
    with pytest.raises(der.DERError, match="trailing"):
        _der.parse_signed_data_der(b"\x30\x00\x00")


def test_nesting_and_element_limits():
    nested = b"\x05\x00"
    for _ in range(der.MAX_DEPTH):
        nested = der.seq(nested)
    assert der.check(nested) == 0x30  # the NULL is at depth MAX_DEPTH: allowed
    with pytest.raises(der.DERError, match="nested more than"):
        der.check(der.seq(nested))
    deep = b"\x30\x80" * 100_000  # BER nesting: refused at the first header, in bounded time
    assert _timed(der.check, deep)[1] is not None
    flat = der.seq(b"\x05\x00" * 1000)
    _, s, e = der.read_tlv(flat, 0)
    assert len(list(der.children(flat, s, e, 1000))) == 1000
    with pytest.raises(der.DERError, match="more than 999 elements"):
        list(der.children(flat, s, e, 999))
    with pytest.raises(der.DERError, match="more than 500 elements"):
        der.check(flat, max_elements=500)
    wide = der.seq(*[der.seq(der.octet_string(b"c" * 4))] * (_der.MAX_ELEMENTS + 1))
    _, s, e = der.read_tlv(wide, 0)
    assert e == len(wide)
    with pytest.raises(der.DERError, match=f"more than {_der.MAX_ELEMENTS} elements"):
        _der._kids(wide, s, e, "certificates")


def test_oid_rules():
    assert der.decode_oid(bytes.fromhex("2a864886f70d010701")) == "1.2.840.113549.1.7.1"
    assert der.decode_oid(bytes.fromhex("883703")) == "2.999.3"  # first subidentifier above 127
    uuid_arc = der.oid("2.25." + str(2**128 - 1))[2:]
    assert der.decode_oid(uuid_arc) == "2.25." + str(2**128 - 1)
    for bad, why in [(b"", "malformed"), (b"\x2a\x86", "malformed"), (b"\x2a\x80\x01", "shortest form"),
                     (b"\x80\x01", "shortest form"), (b"\x2a" + b"\xff" * 3000 + b"\x01", "longer than")]:
        with pytest.raises(der.DERError, match=why):
            der.decode_oid(bad)
    with pytest.raises(der.DERError, match="empty INTEGER"):
        der.decode_integer(b"")


def test_one_error_type():
    """unica.der.DERError is the verifier's DERError, a ValueError and a MalformedInput, so
    `except ValueError` (unica.verify.cms) and `except MalformedInput` callers both see it."""
    assert _der.DERError is der.DERError
    assert issubclass(der.DERError, ValueError) and issubclass(der.DERError, MalformedInput)
    for catch in (ValueError, MalformedInput, _der.DERError):
        with pytest.raises(catch):
            _der.parse_signed_data_der(b"\x30\x80")
    with pytest.raises(der.DERError, match="time is not"):
        _der.time(b"\x17\x05abcdZ")
    with pytest.raises(der.DERError):
        _der.time(b"\x18\x0f20251301120000Z")  # month 13: a content error, still DERError
