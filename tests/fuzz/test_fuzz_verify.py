"""unica.verify on hostile signatures: mutated CMS (made by unica.sign), mutated signed PDFs,
mutated CRLs / OCSP responses supplied offline.

Contract: a report (:class:`SignatureReport` / :class:`PdfReport` / :class:`ValidationReport`)
or a :class:`UnicaError` -- never another exception, never a hang. A mutated signature must
never come out TOTAL-PASSED unless the mutation left the signed bytes intact.
"""

from __future__ import annotations


import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import budget, cached, der_inputs, feed, mutated, pem_inputs, pick


@pytest.fixture(scope="module")
def verifier(seeds):
    from unica.verify import OFF, Verifier

    return Verifier([seeds.root.der], revocation=OFF, cache_size=64)


def test_seeds_verify(seeds, verifier):
    from unica.verify import Indication

    for sig in seeds.cms:
        rep = verifier.verify_cms(sig, seeds.cms_data)
        assert rep.indication is Indication.TOTAL_PASSED, rep
    pdf = verifier.verify_pdf(seeds.pdf)
    assert [s.indication for s in pdf.signatures] == [Indication.TOTAL_PASSED], pdf


@budget(1500)
@given(data=st.data())
def test_verify_cms(seeds, verifier, data):
    from unica.verify import Indication, SignatureReport

    sig = data.draw(cached("cms", lambda: st.one_of(der_inputs(seeds.cms, extra_splices=seeds.certs),
                                                    pem_inputs(seeds.cms, "PKCS7"))))
    content = pick(data.draw, [seeds.cms_data, seeds.cms_data, None, b"", seeds.cms_data + b"x"])
    rep, err = feed("verify.verify_cms", verifier.verify_cms, sig, content)
    if err is not None:
        return
    assert isinstance(rep, SignatureReport)
    if rep.indication is Indication.TOTAL_PASSED:
        assert content in (seeds.cms_data, None)


@budget(300)
@given(data=st.data())
def test_verify_cms_function(seeds, data):
    """The module-level function (builds its own Verifier; trust given as bytes)."""
    from unica.verify import OFF, verify_cms

    sig = data.draw(der_inputs(seeds.cms))
    trust = pick(data.draw, [[seeds.root.der], seeds.root.der, [seeds.root.der, seeds.inter.der]])
    feed("verify.verify_cms", verify_cms, sig, seeds.cms_data, trust=trust, revocation=OFF)


@st.composite
def pdf_inputs(draw, pdf: bytes) -> bytes:
    """The signed PDF with damage where it hurts: the CMS in /Contents, the /ByteRange, the
    xref / trailer, object headers, or anywhere."""
    buf = bytearray(pdf)
    for _ in range(draw(st.integers(1, 3))):
        if not buf:
            buf += draw(st.binary(min_size=1, max_size=16))
        where = draw(st.sampled_from(("contents", "contents", "byterange", "xref", "obj", "anywhere", "truncate",
                                      "append")))
        if where == "contents":
            start = buf.find(b"/Contents <")
            if start < 0:
                start = 0
            start += len(b"/Contents <")
            end = buf.find(b">", start)
            hexsig = bytes(buf[start:end]).rstrip(b"0")
            try:
                der = bytes.fromhex(hexsig.decode() + ("0" if len(hexsig) % 2 else ""))
            except ValueError:
                der = b""
            new = draw(mutated([der] if der else [b"\x30\x00"], max_ops=2)).hex().encode()
            new = new[:end - start].ljust(end - start, b"0")
            buf[start:end] = new
        elif where == "byterange":
            i = buf.find(b"/ByteRange [")
            if i >= 0:
                j = buf.find(b"]", i)
                nums = draw(st.lists(st.sampled_from([b"0", b"-1", b"99999999999", b"1", b"abc", b"1.5",
                                                      str(len(pdf)).encode(), b"/X"]), min_size=0, max_size=6))
                buf[i + 12:j] = b" ".join(nums)
        elif where == "xref":
            i = buf.rfind(b"startxref")
            if i >= 0:
                buf[i + 10:i + 20] = draw(st.sampled_from([b"0", b"-5", b"999999999", b"abc", b"\n"])).ljust(10)
        elif where == "obj":
            idx = [k for k in range(len(buf)) if buf.startswith(b" obj", k)][:40]
            if idx:
                k = draw(st.sampled_from(idx))
                buf[k - 3:k + 4] = draw(st.sampled_from([b"1 0 obj", b"9 9 obj", b"<<<<<<<", b"0 0 R  ", b"       "]))
        elif where == "anywhere":
            i = draw(st.integers(0, len(buf) - 1))
            buf[i:i + 1] = draw(st.binary(min_size=0, max_size=8))
        elif where == "truncate":
            buf = buf[:draw(st.integers(0, len(buf)))]
        else:
            buf += draw(st.sampled_from([b"%%EOF\n", b"trailer << /Root 99 0 R >>\n", b"\x00" * 10,
                                         b"1 0 obj << /Type /Sig /Contents <00> /ByteRange [0 1 2 3] >> endobj\n"]))
    return bytes(buf)


@budget(250)
@given(data=st.data())
def test_verify_pdf(seeds, verifier, data):
    from unica.verify import Indication, PdfReport

    pdf = data.draw(cached("pdf", lambda: st.one_of(pdf_inputs(seeds.pdf), pdf_inputs(seeds.pdf), st.binary(max_size=200),
                                                    st.binary(max_size=50).map(lambda b: b"%PDF-1.7\n" + b))))
    rep, err = feed("verify.verify_pdf", verifier.verify_pdf, pdf)
    if err is not None:
        return
    assert isinstance(rep, PdfReport)
    for s in rep.signatures:
        if s.indication is Indication.TOTAL_PASSED:
            # passing is only right if the bytes the seed's signature covers are intact (the
            # /Contents hex gap is not signed: damage to its zero padding is harmless), or the
            # file grew by an allowed incremental update after the signed revision
            a, b, c, d = seeds.pdf_byte_range
            same = pdf[a:a + b] == seeds.pdf[a:a + b] and pdf[c:c + d] == seeds.pdf[c:c + d]
            assert same or (s.coverage == "ENTIRE_REVISION" and s.modification_level in
                            ("NONE", "LTA_UPDATES", "FORM_FILLING", "ANNOTATIONS")), (s, len(pdf), len(seeds.pdf))


# --- revocation data supplied offline ----------------------------------------------------------


@budget(700)
@given(data=st.data())
def test_offline_crl(seeds, data):
    from unica.verify import OFFLINE_HARD_FAIL, ValidationReport, validate_certificate

    crl = data.draw(cached("crl", lambda: st.one_of(der_inputs(seeds.crls), pem_inputs(seeds.crls, "X509 CRL"))))
    leaf = pick(data.draw, [seeds.signer.der, seeds.rsa_leaf.der])
    rep, err = feed("verify.offline CRL", validate_certificate, leaf, trust=[seeds.root.der],
                    intermediates=[seeds.inter.der], revocation=OFFLINE_HARD_FAIL, crls=[crl],
                    usage="any" if "any" in _usages() else "document-signing")
    if err is None:
        assert isinstance(rep, ValidationReport)


@budget(700)
@given(data=st.data())
def test_offline_ocsp(seeds, data):
    from unica.verify import OFFLINE_HARD_FAIL, ValidationReport, validate_certificate

    resp = data.draw(der_inputs(seeds.ocsp_responses, extra_splices=seeds.certs))
    rep, err = feed("verify.offline OCSP", validate_certificate, seeds.signer.der, trust=[seeds.root.der],
                    intermediates=[seeds.inter.der], revocation=OFFLINE_HARD_FAIL, ocsp_responses=[resp])
    if err is None:
        assert isinstance(rep, ValidationReport)


def _usages():
    from unica.verify import USAGE_PRESETS

    return USAGE_PRESETS
