"""PAdES verification of PDFs signed by pyHanko."""

from __future__ import annotations

import pytest

from unica.errors import MalformedInput
from unica.verify import OFFLINE_HARD_FAIL, Indication, SubIndication, Verifier, verify_pdf

from tests.verify.pki import PKI, blank_pdf, make_crl, pyhanko_sign_pdf


@pytest.fixture(scope="module")
def pki():
    return PKI()


@pytest.fixture(scope="module")
def signed(pki):
    return pyhanko_sign_pdf(pki, pki.signer, blank_pdf())


def _v(pki):
    return Verifier([pki.root.cert], revocation=OFFLINE_HARD_FAIL, crls=[make_crl(pki.inter), make_crl(pki.root)])


def test_signed_pdf_verifies(pki, signed, tmp_path):
    path = tmp_path / "signed.pdf"
    path.write_bytes(signed)
    rep = verify_pdf(path, trust=_v(pki))
    assert rep.indication is Indication.TOTAL_PASSED, rep.to_dict()
    (sig,) = rep.signatures
    assert sig.field_name == "Signature1" and sig.coverage == "ENTIRE_FILE"
    assert sig.format == "PAdES-B-T" and sig.signing_time_source == "timestamp"
    assert sig.signer.organization == "Zhang San Trading"
    assert '"TOTAL-PASSED"' in rep.to_json()


def test_two_signatures(pki, signed):
    second = pyhanko_sign_pdf(pki, pki.signer, signed, field="Signature2", tsa=False)
    rep = _v(pki).verify_pdf(second)
    assert [s.field_name for s in rep.signatures] == ["Signature1", "Signature2"]
    assert rep.signatures[1].signing_time_source == "/M (claimed)"
    assert rep.passed, [s.messages for s in rep.signatures]
    assert rep.signatures[0].coverage == "ENTIRE_REVISION"


def test_tampered_pdf_is_hash_failure(pki, signed):
    i = signed.index(b"/MediaBox")
    tampered = signed[:i] + b"/MediaBoX" + signed[i + 9:]
    rep = _v(pki).verify_pdf(tampered)
    assert rep.indication is Indication.TOTAL_FAILED
    assert rep.signatures[0].sub_indication is SubIndication.HASH_FAILURE


def test_wrong_trust_pdf(pki, signed):
    rep = Verifier([PKI().root.cert]).verify_pdf(signed)
    assert rep.sub_indication is SubIndication.NO_CERTIFICATE_CHAIN_FOUND


def test_not_a_pdf(pki):
    with pytest.raises(MalformedInput):
        _v(pki).verify_pdf(b"hello")


def test_unsigned_pdf(pki):
    rep = _v(pki).verify_pdf(blank_pdf())
    assert rep.indication is Indication.INDETERMINATE and not rep.signatures


def test_incremental_update_changing_content_fails(pki, signed):
    import io

    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    w = IncrementalPdfFileWriter(io.BytesIO(signed))
    page_ref = w.root["/Pages"]["/Kids"][0]
    page = page_ref.get_object()
    page["/MediaBox"] = generic.ArrayObject([generic.NumberObject(x) for x in (0, 0, 100, 100)])
    w.update_container(page)
    out = io.BytesIO()
    w.write(out)
    rep = _v(pki).verify_pdf(out.getvalue())
    (sig,) = rep.signatures
    assert sig.coverage == "ENTIRE_REVISION"
    assert sig.modification_level in ("OTHER", "SUSPICIOUS")
    assert rep.indication is Indication.TOTAL_FAILED and sig.sub_indication is SubIndication.FORMAT_FAILURE
    assert sig.checks.signature == "ok"  # the signed revision itself is intact


def test_mutated_pdfs_never_crash_and_covered_flips_never_pass(pki):
    import random
    import re

    from unica.errors import UnicaError

    pdf = pyhanko_sign_pdf(pki, pki.signer, blank_pdf(), tsa=False)
    a, b, c, d = map(int, re.search(rb"/ByteRange \[(\d+) (\d+) (\d+) (\d+)\]", pdf).groups())
    v = _v(pki)
    rnd = random.Random(6)
    for _ in range(150):
        m = bytearray(pdf)
        i = rnd.randrange(len(m))
        m[i] ^= 1 << rnd.randrange(8)
        try:
            rep = v.verify_pdf(bytes(m))
        except UnicaError:
            continue
        rep.to_json()
        if a <= i < a + b or c <= i < c + d:
            assert not rep.passed, i


@pytest.mark.parametrize("subfilter", ["PADES", "ADOBE_PKCS7_DETACHED"])
def test_embedded_validation_info(pki, subfilter):
    """Revocation data pyHanko embeds (/DSS for PAdES, revocationInfoArchival for
    adbe.pkcs7.detached) is used; a hard-fail Verifier with no data of its own passes."""
    import logging

    from pyhanko.sign.fields import SigSeedSubFilter

    logging.getLogger("pyhanko").setLevel(logging.ERROR)
    pdf = pyhanko_sign_pdf(pki, pki.signer, blank_pdf(), tsa=False, subfilter=getattr(SigSeedSubFilter, subfilter),
                           embed_crls=[make_crl(pki.inter), make_crl(pki.root)])
    v = Verifier([pki.root.cert], revocation=OFFLINE_HARD_FAIL)
    rep = v.verify_pdf(pdf)
    assert rep.passed, [s.messages for s in rep.signatures]
    sig = rep.signatures[0]
    assert sig.checks.embedded_revocation_data == "2 CRL(s), 0 OCSP response(s)"
    assert {e.origin for e in sig.certificate.revocation} == {"embedded"}
    # without embedded data the same Verifier cannot decide
    assert v.verify_pdf(pyhanko_sign_pdf(pki, pki.signer, blank_pdf(), tsa=False)).sub_indication is SubIndication.TRY_LATER
