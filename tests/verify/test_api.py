"""The public API of unica.verify (issue #10, findings 9 and 12): explicit typed keywords,
py.typed, the SigningTimeSource enum, typed checks, UTF-8 JSON, RFC 5280 reason names, and one
time rule (claimed time / time-stamps / proof of existence) shared by CMS and PAdES."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import io
import json
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from cryptography import x509

import unica.verify as uv
from unica.verify import (
    OFFLINE_HARD_FAIL,
    Indication,
    SignatureChecks,
    SigningTimeSource,
    SubIndication,
    Verifier,
    rfc5280_reason_name,
    verify_cms,
    verify_pdf,
)
from unica.verify.cms import time_basis

from tests.verify.pki import DAY, NOW, PKI, USCC, _name, blank_pdf, make_cert, make_crl, pyhanko_sign

DATA = b"contract 2026-17"
REPO = Path(__file__).resolve().parents[2]
POLICY_KEYWORDS = ("at", "usage", "revocation", "policies", "require_explicit_policy", "inhibit_policy_mapping",
                   "inhibit_any_policy", "strict")


@pytest.fixture(scope="module")
def pki():
    return PKI()


def _v(pki, crls=None):
    return Verifier([pki.root.cert], revocation=OFFLINE_HARD_FAIL,
                    crls=crls if crls is not None else [make_crl(pki.inter), make_crl(pki.root)])


# --- signing helpers with a chosen claimed time -------------------------------------------------


def _sign_cms_at(pki, ident, data, claimed):
    """pyHanko CAdES-B-B (no time-stamp) whose signing-time attribute is ``claimed``."""
    from pyhanko.sign import signers
    from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    signer = signers.SimpleSigner(signing_cert=ident.asn1_cert, signing_key=ident.asn1_key,
                                  cert_registry=SimpleCertificateStore.from_certs([pki.inter.asn1_cert]))
    ci = asyncio.run(signer.async_sign_general_data(
        data, "sha256", detached=True, use_cades=True,
        signed_attr_settings=PdfCMSSignedAttributes(signing_time=claimed)))
    return ci.dump()


def _sign_pdf_at(pki, ident, pdf, claimed, field="Signature1"):
    """pyHanko PAdES-B-B (no time-stamp) whose /M is ``claimed``."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko.sign.fields import SigSeedSubFilter
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    class AtTime(signers.PdfSigner):
        def init_signing_session(self, pdf_out, existing_fields_only=False):
            session = super().init_signing_session(pdf_out, existing_fields_only=existing_fields_only)
            session.system_time = claimed
            return session

    signer = signers.SimpleSigner(signing_cert=ident.asn1_cert, signing_key=ident.asn1_key,
                                  cert_registry=SimpleCertificateStore.from_certs([pki.inter.asn1_cert]))
    meta = signers.PdfSignatureMetadata(field_name=field, subfilter=SigSeedSubFilter.PADES)
    out = AtTime(meta, signer=signer).sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf)))
    return out.getvalue()


def _add_doc_timestamp(pki, pdf, at):
    """A PAdES document time-stamp (/DocTimeStamp) over ``pdf``, genTime ``at``."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    ts = DummyTimeStamper(tsa_cert=pki.tsa.asn1_cert, tsa_key=pki.tsa.asn1_key,
                          certs_to_embed=SimpleCertificateStore.from_certs([pki.inter.asn1_cert]), fixed_dt=at)
    out = signers.PdfTimeStamper(ts, field_name="DocTs1").timestamp_pdf(
        IncrementalPdfFileWriter(io.BytesIO(pdf)), "sha256")
    return out.getvalue()


# --- finding 12: explicit, typed keywords ------------------------------------------------------


@pytest.mark.parametrize("func", [uv.verify_cms, uv.verify_pdf, Verifier.verify_cms, Verifier.verify_cms_all,
                                  Verifier.verify_pdf], ids=lambda f: f.__qualname__)
def test_no_var_keyword_and_every_keyword_typed(func):
    sig = inspect.signature(func)
    kinds = {p.kind for p in sig.parameters.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds and inspect.Parameter.VAR_POSITIONAL not in kinds
    for name in POLICY_KEYWORDS:
        p = sig.parameters[name]
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, name
    for p in sig.parameters.values():
        if p.name != "self":
            assert p.annotation is not inspect.Parameter.empty, p.name
    assert sig.return_annotation is not inspect.Signature.empty
    # the annotations resolve (no dangling names for type checkers)
    # (Verifier is imported for type checkers only in the modules defining these: give it here)
    hints = typing.get_type_hints(func, globalns={**vars(sys.modules[func.__module__]), "Verifier": Verifier})
    assert "policies" in hints and "return" in hints
    assert func.__doc__ and "require_explicit_policy" in (func.__doc__ + (uv.Verifier.verify_cms.__doc__ or ""))


def test_unknown_keyword_is_a_type_error(pki):
    with pytest.raises(TypeError):
        _v(pki).verify_cms(b"x", DATA, polices=["1.2.3"])  # misspelt: no longer swallowed by **kw
    with pytest.raises(TypeError):
        verify_pdf(blank_pdf(), trust=[pki.root.cert], ocsp=[])


def test_policy_keywords_reach_certificate_validation(pki):
    """require_explicit_policy / policies go to validate_certificate for the signer (the test
    PKI's certificates carry no certificatePolicies)."""
    sig = pyhanko_sign(pki, pki.signer, DATA, tsa=False)
    v = _v(pki)
    assert v.verify_cms(sig, DATA).passed
    rep = v.verify_cms(sig, DATA, require_explicit_policy=True)
    assert (rep.indication, rep.sub_indication) == (Indication.INDETERMINATE, SubIndication.POLICY_PROCESSING_ERROR)
    rep = v.verify_cms_all(sig, DATA, policies=["1.3.6.1.4.1.99999.1.1"], require_explicit_policy=True)
    assert [r.sub_indication for r in rep] == [SubIndication.POLICY_PROCESSING_ERROR]
    rep = verify_cms(sig, DATA, trust=[pki.root.cert], revocation=OFFLINE_HARD_FAIL,
                     crls=[make_crl(pki.inter), make_crl(pki.root)], require_explicit_policy=True)
    assert rep.sub_indication is SubIndication.POLICY_PROCESSING_ERROR
    pdf = _sign_pdf_at(pki, pki.signer, blank_pdf(), NOW - DAY)
    assert v.verify_pdf(pdf).passed
    assert v.verify_pdf(pdf, require_explicit_policy=True).sub_indication is SubIndication.POLICY_PROCESSING_ERROR


def test_one_off_function_refuses_verifier_settings_beside_a_verifier(pki):
    sig = pyhanko_sign(pki, pki.signer, DATA, tsa=False)
    with pytest.raises(TypeError, match="crls"):
        verify_cms(sig, DATA, trust=_v(pki), crls=[make_crl(pki.inter)])
    assert verify_cms(sig, DATA, trust=_v(pki)).passed


def test_py_typed_is_shipped():
    assert (REPO / "unica" / "verify" / "py.typed").is_file()
    # build the package as an installer would (setuptools build_py) from a copy of the tree:
    # py.typed must be among the installed files
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "src"
        shutil.copytree(REPO / "unica", src / "unica", ignore=shutil.ignore_patterns("__pycache__"))
        for f in ("setup.cfg", "pyproject.toml", "README.md"):
            shutil.copy(REPO / f, src / f)
        p = subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py",
                            "-d", str(Path(d) / "lib"), "egg_info", "-e", d],
                           cwd=src, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert (Path(d) / "lib" / "unica" / "verify" / "py.typed").is_file()
        assert "unica/verify/py.typed" in (Path(d) / "unica.egg-info" / "SOURCES.txt").read_text().split()


# --- report types ------------------------------------------------------------------------------


def test_signing_time_source_enum():
    assert {s.value for s in SigningTimeSource} == {
        "timestamp", "document time-stamp", "validation time given", "signing-time attribute (claimed)",
        "/M (claimed)", "none"}
    assert SigningTimeSource.TIMESTAMP == "timestamp" and f"{SigningTimeSource.PDF_M}" == "/M (claimed)"
    assert [s for s in SigningTimeSource if s.is_proof] == [
        SigningTimeSource.TIMESTAMP, SigningTimeSource.DOCUMENT_TIMESTAMP, SigningTimeSource.VALIDATION_TIME_GIVEN]


def test_checks_are_typed(pki):
    rep = _v(pki).verify_cms(pyhanko_sign(pki, pki.signer, DATA), DATA)
    assert isinstance(rep.checks, SignatureChecks) and isinstance(rep.signing_time_source, SigningTimeSource)
    assert rep.signing_time_source is SigningTimeSource.TIMESTAMP
    assert rep.checks.message_digest == "ok" and rep.checks.signature_timestamp == "ok"
    assert rep.checks.message_imprint is None and rep.checks.document_timestamp is None
    labels = dict(rep.checks.items())  # what the CLI prints
    assert labels["message-digest"] == "ok" and labels["signing-certificate"] == "ok (v2)"
    assert "message-imprint" not in labels
    d = rep.to_dict()
    assert d["checks"] == rep.checks.to_dict() and "message_imprint" not in d["checks"]
    assert d["checks"]["signature"] == "ok" and d["signing_time_source"] == "timestamp"
    assert rep.timestamp.checks.message_imprint is None  # a signature time-stamp: imprint checked in cms
    with pytest.raises(dataclasses.FrozenInstanceError):
        rep.checks.signature = "forged"  # type: ignore[misc]
    assert not SignatureChecks() and SignatureChecks(signature="ok")


def test_json_is_utf8_like_the_cli(pki):
    org = "北京张三贸易有限公司"
    ident = make_cert(_name("张三 电子印章", org=org, org_id=f"NTRCN-{USCC}"), pki.inter,
                      ku=dict(digital_signature=True, content_commitment=True))
    rep = _v(pki).verify_cms(pyhanko_sign(pki, ident, DATA, tsa=False), DATA)
    assert rep.passed, rep.messages
    text = rep.to_json()
    assert org in text and "\\u" not in text
    assert json.loads(text)["signer"]["organization"] == org
    assert json.loads(text.encode("utf-8")) == rep.to_dict()
    # the same text as `unica verify ... --json` (unica.cli.common.emit_json)
    assert text == json.dumps(rep.to_dict(), indent=2, ensure_ascii=False, default=str)
    assert rep.to_json(indent=None, ensure_ascii=True) == json.dumps(rep.to_dict())


def test_signer_identity_organization_identifier(pki):
    rep = _v(pki).verify_cms(pyhanko_sign(pki, pki.signer, DATA, tsa=False), DATA)
    assert rep.signer.uscc == USCC
    assert rep.signer.organization_identifier == f"NTRCN-{USCC}"
    assert rep.certificate.signer.organization_identifier == f"NTRCN-{USCC}"


def test_rfc5280_reason_names():
    from asn1crypto import crl as acrl

    expected = {
        "unspecified": "unspecified", "key_compromise": "keyCompromise", "ca_compromise": "cACompromise",
        "affiliation_changed": "affiliationChanged", "superseded": "superseded",
        "cessation_of_operation": "cessationOfOperation", "certificate_hold": "certificateHold",
        "remove_from_crl": "removeFromCRL", "privilege_withdrawn": "privilegeWithdrawn",
        "aa_compromise": "aACompromise"}
    for flag in x509.ReasonFlags:
        assert rfc5280_reason_name(flag) == expected[flag.name] == flag.value
        assert rfc5280_reason_name(flag.name) == expected[flag.name]
    assert set(acrl.CRLReason._map.values()) == set(expected)  # asn1crypto's native names
    for code, native in acrl.CRLReason._map.items():
        assert rfc5280_reason_name(native) == expected[native]
        assert rfc5280_reason_name(acrl.CRLReason(native).native) == expected[native]
        assert rfc5280_reason_name(code) == expected[native]
    assert rfc5280_reason_name("keyCompromise") == rfc5280_reason_name("key-compromise") == "keyCompromise"
    assert rfc5280_reason_name(None) is None and rfc5280_reason_name(7) == "unknown (7)"
    with pytest.raises(ValueError):
        rfc5280_reason_name("stolen")
    with pytest.raises(TypeError):
        rfc5280_reason_name(True)


def test_revoked_signer_reason_is_rfc5280_name(pki):
    victim = pki.leaf("Reason Name Ltd", ku=dict(digital_signature=True))
    crl = make_crl(pki.inter, [(victim.cert.serial_number, NOW - 2 * DAY, x509.ReasonFlags.ca_compromise)], number=3)
    rep = _v(pki, [crl, make_crl(pki.root)]).verify_cms(_sign_cms_at(pki, victim, DATA, NOW - DAY), DATA)
    assert rep.sub_indication is SubIndication.REVOKED  # the signer itself claims a time after the revocation
    assert [e.revocation_reason for e in rep.certificate.revocation if e.status == "revoked"] == ["cACompromise"]


# --- finding 9: one time rule for CMS, CAdES and PAdES -----------------------------------------


def test_time_basis_rule():
    t1, t2, t3 = NOW - 3 * DAY, NOW - 2 * DAY, NOW - DAY
    b = time_basis(signing_time_attribute=t1, pdf_m=t2, now=NOW)
    assert (b.validation_time, b.time_is_proven, b.claimed_time, b.source) == \
        (NOW, False, t1, SigningTimeSource.SIGNING_TIME_ATTRIBUTE)
    b = time_basis(pdf_m=t2, now=NOW)
    assert (b.claimed_time, b.signing_time, b.source) == (t2, t2, SigningTimeSource.PDF_M)
    b = time_basis(now=NOW)
    assert (b.validation_time, b.claimed_time, b.signing_time, b.source) == (NOW, None, None, SigningTimeSource.NONE)
    # proofs of existence: the earliest wins; the claimed time then plays no part
    b = time_basis(timestamp=t3, document_timestamp=t2, at=NOW, signing_time_attribute=t1)
    assert (b.validation_time, b.time_is_proven, b.claimed_time, b.source) == \
        (t2, True, None, SigningTimeSource.DOCUMENT_TIMESTAMP)
    assert time_basis(timestamp=t2, at=t3).source is SigningTimeSource.TIMESTAMP
    assert time_basis(timestamp=t3, at=t2, pdf_m=t1).source is SigningTimeSource.VALIDATION_TIME_GIVEN


@pytest.fixture(scope="module")
def revoked_case(pki):
    """A signer revoked a day ago; it claims (signing-time / /M) to have signed 3 days ago;
    nothing proves it. The CRL is given offline."""
    victim = pki.leaf("Claimed Time Ltd", ku=dict(digital_signature=True, content_commitment=True))
    crl = make_crl(pki.inter, [(victim.cert.serial_number, NOW - DAY, x509.ReasonFlags.key_compromise)], number=5)
    claimed = NOW - 3 * DAY
    return dict(victim=victim, crls=[crl, make_crl(pki.root)], claimed=claimed,
                cms=_sign_cms_at(pki, victim, DATA, claimed), pdf=_sign_pdf_at(pki, victim, blank_pdf(), claimed))


def test_cms_and_pdf_agree_on_revoked_signer_without_poe(pki, revoked_case):
    v = _v(pki, revoked_case["crls"])
    cms_rep = v.verify_cms(revoked_case["cms"], DATA)
    (pdf_rep,) = v.verify_pdf(revoked_case["pdf"]).signatures
    for rep, source in ((cms_rep, SigningTimeSource.SIGNING_TIME_ATTRIBUTE), (pdf_rep, SigningTimeSource.PDF_M)):
        assert (rep.indication, rep.sub_indication) == (Indication.INDETERMINATE, SubIndication.REVOKED_NO_POE), \
            rep.messages
        assert rep.signing_time == revoked_case["claimed"] and rep.signing_time_source is source
        assert rep.certificate.validation_time > NOW - DAY  # validated now: the claim proves nothing
    # the one-off functions say the same
    kw = dict(trust=[pki.root.cert], revocation=OFFLINE_HARD_FAIL, crls=revoked_case["crls"])
    assert verify_cms(revoked_case["cms"], DATA, **kw).sub_indication is SubIndication.REVOKED_NO_POE
    assert verify_pdf(revoked_case["pdf"], **kw).sub_indication is SubIndication.REVOKED_NO_POE


def test_cms_and_pdf_agree_with_a_given_validation_time(pki, revoked_case):
    v = _v(pki, revoked_case["crls"])
    before, after = NOW - 2 * DAY, NOW - DAY / 2
    for at, expected in ((before, (Indication.TOTAL_PASSED, None)),
                         (after, (Indication.TOTAL_FAILED, SubIndication.REVOKED))):
        cms_rep = v.verify_cms(revoked_case["cms"], DATA, at=at)
        pdf_rep = v.verify_pdf(revoked_case["pdf"], at=at).signatures[0]
        for rep in (cms_rep, pdf_rep):
            assert (rep.indication, rep.sub_indication) == expected, rep.messages
            assert rep.signing_time == at and rep.signing_time_source is SigningTimeSource.VALIDATION_TIME_GIVEN


def test_document_timestamp_is_a_poe_for_the_signature_it_covers(pki, revoked_case):
    v = _v(pki, revoked_case["crls"])
    # document time-stamp before the revocation: proves the signature existed then -> passes
    pdf = _add_doc_timestamp(pki, revoked_case["pdf"], NOW - 2 * DAY)
    rep = v.verify_pdf(pdf)
    sig, docts = rep.signatures
    assert docts.format == "PAdES document time-stamp" and docts.passed, docts.messages
    assert docts.checks.message_imprint == "ok" and docts.signing_time_source is SigningTimeSource.TIMESTAMP
    assert sig.passed, sig.messages
    assert sig.signing_time == NOW - 2 * DAY and sig.signing_time_source is SigningTimeSource.DOCUMENT_TIMESTAMP
    assert sig.checks.document_timestamp.startswith("ok (DocTs1")
    assert rep.passed
    # document time-stamp after the revocation: the proven time is after it -> REVOKED
    pdf = _add_doc_timestamp(pki, revoked_case["pdf"], NOW - DAY / 2)
    sig, docts = v.verify_pdf(pdf).signatures
    assert docts.passed and (sig.indication, sig.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.REVOKED)
    assert sig.signing_time_source is SigningTimeSource.DOCUMENT_TIMESTAMP


def test_signature_timestamp_wins_over_claimed_time_for_cms_and_pdf(pki, revoked_case):
    """Time-stamped before the revocation: both CMS and PAdES pass, validated at the genTime."""
    from tests.verify.pki import pyhanko_sign_pdf

    victim, v = revoked_case["victim"], _v(pki, revoked_case["crls"])
    cms_rep = v.verify_cms(pyhanko_sign(pki, victim, DATA, timestamp_at=NOW - 2 * DAY), DATA)
    pdf_rep = v.verify_pdf(pyhanko_sign_pdf(pki, victim, blank_pdf(), timestamp_at=NOW - 2 * DAY)).signatures[0]
    for rep in (cms_rep, pdf_rep):
        assert rep.passed, rep.messages
        assert rep.signing_time == NOW - 2 * DAY and rep.signing_time_source is SigningTimeSource.TIMESTAMP
        assert rep.certificate.validation_time == NOW - 2 * DAY
