"""CMS / CAdES verification against signatures made by openssl and pyHanko (real crypto)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from unica.errors import MalformedInput
from unica.verify import (
    OFF,
    OFFLINE_HARD_FAIL,
    Indication,
    RevocationPolicy,
    SubIndication,
    Verifier,
    validate_certificate,
    verify_cms,
)

from tests.verify.pki import DAY, NOW, PKI, USCC, make_cert, make_crl, make_ocsp, openssl_cms_sign, pyhanko_sign, _name

DATA = "报关单 declaration 2026-0001".encode()


@pytest.fixture(scope="module")
def pki():
    return PKI()


def _v(pki, **kw):
    kw.setdefault("revocation", OFFLINE_HARD_FAIL)
    kw.setdefault("crls", [make_crl(pki.inter), make_crl(pki.root)])
    return Verifier([pki.root.cert], **kw)


@pytest.mark.parametrize("detached", [True, False])
@pytest.mark.parametrize("cades", [False, True])
def test_openssl_cms_verifies(tmp_path, pki, detached, cades):
    sig = openssl_cms_sign(tmp_path, pki, pki.signer, DATA, detached=detached, cades=cades)
    rep = _v(pki).verify_cms(sig, DATA if detached else None)
    assert rep.indication is Indication.TOTAL_PASSED, rep.messages
    assert rep.checks.message_digest == "ok" and rep.checks.signature == "ok"
    assert rep.format == ("CAdES-B-B" if cades else "CMS")
    assert rep.signer.uscc == USCC and rep.signer.organization == "Zhang San Trading"
    assert [p.subject for p in rep.certificate.path][1:] == [
        pki.inter.cert.subject.rfc4514_string(), pki.root.cert.subject.rfc4514_string()]
    assert rep.certificate.revocation and rep.certificate.revocation[0].status == "good"
    rep.to_json()


def test_pyhanko_cades_bt_verifies(pki):
    sig = pyhanko_sign(pki, pki.signer, DATA, detached=True)
    rep = _v(pki).verify_cms(sig, DATA)
    assert rep.passed, rep.messages
    assert rep.format == "CAdES-B-T"
    assert rep.signing_time_source == "timestamp"
    assert rep.checks.signature_timestamp == "ok" and rep.checks.signing_certificate == "ok (v2)"
    assert rep.timestamp is not None and rep.timestamp.passed
    assert rep.timestamp.certificate.usage == "timestamping"


def test_pyhanko_attached_verifies(pki):
    sig = pyhanko_sign(pki, pki.signer, DATA, detached=False, tsa=False)
    assert _v(pki).verify_cms(sig).passed
    # the one-off function (no Verifier kept)
    rep = verify_cms(sig, trust=[pki.root.cert], revocation=OFFLINE_HARD_FAIL,
                     crls=[make_crl(pki.inter), make_crl(pki.root)])
    assert rep.passed and rep.certificate.source == "validated"


def test_tampered_content_is_hash_failure(tmp_path, pki):
    sig = openssl_cms_sign(tmp_path, pki, pki.signer, DATA, detached=True)
    rep = _v(pki).verify_cms(sig, DATA + b" ")
    assert (rep.indication, rep.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE)
    sig2 = pyhanko_sign(pki, pki.signer, DATA)
    rep = _v(pki).verify_cms(sig2, DATA.replace(b"0001", b"0002"))
    assert rep.sub_indication is SubIndication.HASH_FAILURE


def test_tampered_signature_value_is_sig_crypto_failure(pki):
    from asn1crypto import cms

    ci = cms.ContentInfo.load(pyhanko_sign(pki, pki.signer, DATA, tsa=False))
    si = ci["content"]["signer_infos"][0]
    raw = bytearray(si["signature"].native)
    raw[-3] ^= 1
    si["signature"] = bytes(raw)
    rep = _v(pki).verify_cms(ci.dump(force=True), DATA)
    assert (rep.indication, rep.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.SIG_CRYPTO_FAILURE)


def test_detached_without_data(pki):
    rep = _v(pki).verify_cms(pyhanko_sign(pki, pki.signer, DATA, tsa=False))
    assert rep.sub_indication is SubIndication.SIGNED_DATA_NOT_FOUND


def test_wrong_trust_root(pki):
    other = PKI()
    rep = Verifier([other.root.cert], revocation=OFF).verify_cms(pyhanko_sign(pki, pki.signer, DATA), DATA)
    assert (rep.indication, rep.sub_indication) == (Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND)


def test_revoked_before_signing(pki):
    victim = pki.leaf("Revoked Early Ltd", ku=dict(digital_signature=True))
    crl = make_crl(pki.inter, [(victim.cert.serial_number, NOW - 3 * DAY, x509.ReasonFlags.key_compromise)])
    sig = pyhanko_sign(pki, victim, DATA)  # timestamp: now, after the revocation
    rep = _v(pki, crls=[crl, make_crl(pki.root)]).verify_cms(sig, DATA)
    assert (rep.indication, rep.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.REVOKED)
    ev = [e for e in rep.certificate.revocation if e.status == "revoked"]
    assert ev and ev[0].revocation_reason == "keyCompromise"


def test_revoked_after_timestamped_signing_passes(pki):
    victim = pki.leaf("Revoked Later Ltd", ku=dict(digital_signature=True))
    crl = make_crl(pki.inter, [(victim.cert.serial_number, NOW - 1 * DAY)])
    sig = pyhanko_sign(pki, victim, DATA, timestamp_at=NOW - 2 * DAY)
    rep = _v(pki, crls=[crl, make_crl(pki.root)]).verify_cms(sig, DATA)
    assert rep.passed, rep.messages
    assert rep.signing_time == NOW - 2 * DAY and rep.signing_time_source == "timestamp"
    # without the time-stamp the same revoked signer does not pass
    sig_bb = pyhanko_sign(pki, victim, DATA, tsa=False)
    rep = _v(pki, crls=[crl, make_crl(pki.root)]).verify_cms(sig_bb, DATA)
    assert rep.indication is not Indication.TOTAL_PASSED
    assert rep.sub_indication in (SubIndication.REVOKED, SubIndication.REVOKED_NO_POE)


def test_expired_signer(pki):
    old = pki.leaf("Expired Ltd", ku=dict(digital_signature=True), not_before=NOW - 400 * DAY,
                   not_after=NOW - 10 * DAY)
    rep = _v(pki).verify_cms(pyhanko_sign(pki, old, DATA, tsa=False), DATA)
    assert (rep.indication, rep.sub_indication) == (Indication.INDETERMINATE, SubIndication.OUT_OF_BOUNDS_NO_POE)
    # a time-stamp after expiry proves the signature was made too late
    rep = _v(pki).verify_cms(pyhanko_sign(pki, old, DATA), DATA)
    assert (rep.indication, rep.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.EXPIRED)
    # a time-stamp within validity: passes
    rep = _v(pki).verify_cms(pyhanko_sign(pki, old, DATA, timestamp_at=NOW - 20 * DAY), DATA)
    assert rep.passed, rep.messages


def test_wrong_key_usage(pki):
    enc = pki.leaf("Encrypt Only Ltd", ku=dict(key_encipherment=True))
    rep = _v(pki).verify_cms(pyhanko_sign(pki, enc, DATA, tsa=False), DATA)
    assert rep.indication is Indication.INDETERMINATE
    assert rep.sub_indication is SubIndication.CHAIN_CONSTRAINTS_FAILURE
    assert "document-signing" in " ".join(rep.messages)


def test_hard_fail_without_revocation_data_is_try_later(pki):
    rep = Verifier([pki.root.cert], revocation=OFFLINE_HARD_FAIL).verify_cms(pyhanko_sign(pki, pki.signer, DATA, tsa=False), DATA)
    assert (rep.indication, rep.sub_indication) == (Indication.INDETERMINATE, SubIndication.TRY_LATER)


def test_unparsable_signature_raises(pki):
    with pytest.raises(MalformedInput):
        _v(pki).verify_cms(b"not a signature", DATA)


def test_cache_reuses_validated_path(pki):
    v = _v(pki)
    sig = pyhanko_sign(pki, pki.signer, DATA, tsa=False)
    first = v.verify_cms(sig, DATA)
    second = v.verify_cms(sig, DATA)
    assert first.certificate.source == "validated" and second.certificate.source == "cache"
    assert second.passed
    # tampering is still caught with a warm cache
    assert v.verify_cms(sig, DATA + b"x").sub_indication is SubIndication.HASH_FAILURE


# --- certificate validation: revocation sources, delegated OCSP, delta CRLs ---------------


def test_ocsp_direct_and_delegated(pki):
    # an OCSP answer is used for a certificate that names an OCSP responder (AIA)
    leaf = pki.leaf("Ocsp Ltd", ku=dict(digital_signature=True), ocsp_url="http://127.0.0.1:9/ocsp")
    for responder in (None, pki.responder):
        good = make_ocsp(leaf.cert, pki.inter, responder)
        rep = validate_certificate(leaf.cert, trust=[pki.root.cert], intermediates=[pki.inter.cert],
                                   revocation=OFFLINE_HARD_FAIL, ocsp_responses=[good], crls=[make_crl(pki.root)])
        assert rep.passed, rep.messages
        assert rep.revocation[0].source == "OCSP"
    bad = make_ocsp(leaf.cert, pki.inter, pki.responder, status="revoked", revoked_at=NOW - DAY)
    rep = validate_certificate(leaf.cert, trust=[pki.root.cert], intermediates=[pki.inter.cert],
                               revocation=OFFLINE_HARD_FAIL, ocsp_responses=[bad], crls=[make_crl(pki.root)])
    assert rep.sub_indication is SubIndication.REVOKED
    # a responder without the OCSPSigning EKU is not trusted
    rogue = make_cert(_name("Rogue"), pki.inter, ku=dict(digital_signature=True))
    forged = make_ocsp(leaf.cert, pki.inter, rogue)
    rep = validate_certificate(leaf.cert, trust=[pki.root.cert], intermediates=[pki.inter.cert],
                               revocation=OFFLINE_HARD_FAIL, ocsp_responses=[forged], crls=[make_crl(pki.root)])
    assert rep.sub_indication is SubIndication.TRY_LATER
    assert any("unauthorized" in m for m in rep.messages), rep.messages


def test_delta_crl(pki):
    leaf = pki.leaf("Delta Ltd", ku=dict(digital_signature=True))
    base = make_crl(pki.inter, number=10)
    delta = make_crl(pki.inter, [(leaf.cert.serial_number, NOW - DAY)], number=11, delta_of=10)
    rep = validate_certificate(leaf.cert, trust=[pki.root.cert], intermediates=[pki.inter.cert],
                               revocation=OFFLINE_HARD_FAIL, crls=[base, delta, make_crl(pki.root)])
    assert rep.sub_indication is SubIndication.REVOKED
    assert any(e.source == "delta-CRL" for e in rep.revocation)


def test_point_in_time_and_validity(pki):
    leaf = pki.leaf("Future Ltd", ku=dict(digital_signature=True), not_before=NOW + 10 * DAY)
    rep = validate_certificate(leaf.cert, trust=[pki.root.cert], intermediates=[pki.inter.cert], revocation=OFF)
    assert rep.sub_indication is SubIndication.NOT_YET_VALID and rep.indication is Indication.TOTAL_FAILED
    rep = validate_certificate(leaf.cert, trust=[pki.root.cert], intermediates=[pki.inter.cert], revocation=OFF,
                               at=NOW + 20 * DAY)
    assert rep.passed


def test_usage_presets(pki):
    tls = pki.leaf("Tls Ltd", ku=dict(digital_signature=True), eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    kw = dict(trust=[pki.root.cert], intermediates=[pki.inter.cert], revocation=OFF)
    assert not validate_certificate(tls.cert, usage="document-signing", **kw).passed
    signing = pki.leaf("Doc Ltd", ku=dict(content_commitment=True),
                       eku=[x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36"), ExtendedKeyUsageOID.CLIENT_AUTH])
    assert validate_certificate(signing.cert, usage="document-signing", **kw).passed
    assert not validate_certificate(tls.cert, usage="client-auth", **kw).passed
    assert validate_certificate(tls.cert, usage="ku:digitalSignature;eku:serverAuth", **kw).passed
    assert validate_certificate(pki.tsa.cert, usage="timestamping", **kw).passed
    assert not validate_certificate(pki.signer.cert, usage="timestamping", **kw).passed


@pytest.mark.parametrize("detached", [True, False])
@pytest.mark.parametrize("rsa_pss", [False, True])
def test_unica_signed_cms_verifies(pki, detached, rsa_pss):
    sign = pytest.importorskip("unica.sign")
    from cryptography.hazmat.primitives.asymmetric import rsa

    ident = pki.signer
    if rsa_pss:
        ident = make_cert(_name("Rsa Pss Signer", org="Pss Ltd"), pki.inter, key=rsa.generate_private_key(65537, 2048),
                          ku=dict(digital_signature=True, content_commitment=True))
    sid = sign.SigningIdentity(key=ident.key, cert=ident.cert, chain=(pki.inter.cert,), pss=rsa_pss)
    sig = sign.sign_cms(DATA, sid, detached=detached)
    from unica.verify.cms import parse_signed_data

    assert (parse_signed_data(sig).signers[0].sig_oid == "1.2.840.113549.1.1.10") == rsa_pss
    rep = _v(pki).verify_cms(sig, DATA if detached else None)
    assert rep.passed, rep.messages
    assert rep.format == "CAdES-B-B" and rep.signing_time_source == "signing-time attribute (claimed)"
    assert _v(pki).verify_cms(sig, DATA[:-1]).sub_indication is SubIndication.HASH_FAILURE if detached else True


def test_partitioned_crl_applies_only_to_its_partition(pki):
    from cryptography.hazmat.primitives import hashes

    url_a, url_b = "http://crl.example/a.crl", "http://crl.example/b.crl"
    leaf = pki.leaf("Partition B Ltd", ku=dict(digital_signature=True), cdp=url_b)

    def part(url, revoked=()):
        b = (x509.CertificateRevocationListBuilder().issuer_name(pki.inter.cert.subject)
             .last_update(NOW - DAY).next_update(NOW + DAY).add_extension(x509.CRLNumber(5), False)
             .add_extension(x509.IssuingDistributionPoint(
                 full_name=[x509.UniformResourceIdentifier(url)], relative_name=None,
                 only_contains_user_certs=False, only_contains_ca_certs=False, only_some_reasons=None,
                 indirect_crl=False, only_contains_attribute_certs=False), True))
        for serial in revoked:
            b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                          .revocation_date(NOW - DAY).build())
        return b.sign(pki.inter.key, hashes.SHA256())

    kw = dict(trust=[pki.root.cert], intermediates=[pki.inter.cert],
              revocation=RevocationPolicy(mode="hard-fail", fetch=False, check_ca=False))
    # partition A's CRL says nothing about a partition B certificate: no usable data
    rep = validate_certificate(leaf.cert, crls=[part(url_a)], **kw)
    assert rep.sub_indication is SubIndication.TRY_LATER
    assert any("revocation information" in m for m in rep.messages), rep.messages
    assert validate_certificate(leaf.cert, crls=[part(url_b)], **kw).passed
    rep = validate_certificate(leaf.cert, crls=[part(url_a), part(url_b, [leaf.cert.serial_number])], **kw)
    assert rep.sub_indication is SubIndication.REVOKED


def test_crl_added_later_overrides_cached_pass(pki):
    victim = pki.leaf("Later Crl Ltd", ku=dict(digital_signature=True))
    v = _v(pki, revocation=OFFLINE_HARD_FAIL)
    assert v.validate_certificate(victim.cert, intermediates=[pki.inter.cert]).passed
    v.source.add_crl(make_crl(pki.inter, [(victim.cert.serial_number, NOW - DAY)], number=7))
    assert v.validate_certificate(victim.cert, intermediates=[pki.inter.cert]).sub_indication is SubIndication.REVOKED


def test_openssl_streamed_ber_cms_verifies(tmp_path, pki):
    sig = openssl_cms_sign(tmp_path, pki, pki.signer, DATA, detached=False, stream=True)
    assert sig[1] == 0x80  # indefinite length: BER, normalised before parsing
    rep = _v(pki).verify_cms(sig)
    assert rep.passed, rep.messages


def test_mutated_signatures_never_crash(pki):
    """Every byte flip / truncation of a CAdES-B-T signature gives a report or a typed error."""
    import random

    from unica.errors import UnicaError

    sig = pyhanko_sign(pki, pki.signer, DATA)
    v = _v(pki)
    rnd = random.Random(6)
    variants = [sig[:n] for n in (0, 1, 2, 10, len(sig) // 2, len(sig) - 1)]
    for _ in range(300):
        b = bytearray(sig)
        i = rnd.randrange(len(b))
        b[i] ^= 1 << rnd.randrange(8)
        variants.append(bytes(b))
    # flips inside the signed attributes or the signature value must never pass
    from unica.verify.cms import parse_signed_data

    si = parse_signed_data(sig).signers[0]
    protected = []
    for blob in (si.signed_attrs, si.signature):
        start = sig.index(blob)
        protected.extend(range(start + 2, start + len(blob)))
    must_fail = []
    for i in rnd.sample(protected, 60):
        b = bytearray(sig)
        b[i] ^= 0x01
        must_fail.append(bytes(b))
    outcomes = {"passed": 0, "failed": 0, "error": 0}
    for s in variants + must_fail:
        try:
            rep = v.verify_cms(s, DATA)
        except UnicaError:
            outcomes["error"] += 1
            continue
        outcomes["passed" if rep.passed else "failed"] += 1
        rep.to_json()
        if s in must_fail:
            assert not rep.passed
    # flips elsewhere (an unused embedded root, a time-stamp that then is not used, digestAlgorithms)
    # may leave the signature valid; none may crash
    assert sum(outcomes.values()) == len(variants) + len(must_fail)


def test_two_signers(tmp_path, pki):
    """openssl cms -resign adds a second SignerInfo; each signer gets its own report."""
    import subprocess

    other = pki.leaf("Second Signer Ltd", ku=dict(digital_signature=True))
    first = openssl_cms_sign(tmp_path, pki, pki.signer, DATA, detached=False, cades=True)
    (tmp_path / "first.p7s").write_bytes(first)
    c, k = pki.write(tmp_path, other, "second")
    subprocess.run(["openssl", "cms", "-resign", "-binary", "-md", "sha256", "-inform", "DER", "-in",
                    str(tmp_path / "first.p7s"), "-signer", str(c), "-inkey", str(k), "-outform", "DER",
                    "-out", str(tmp_path / "both.p7s"), "-nodetach"], check=True, capture_output=True)
    both = (tmp_path / "both.p7s").read_bytes()
    reps = _v(pki).verify_cms_all(both)
    assert len(reps) == 2 and all(r.passed for r in reps), [r.messages for r in reps]
    assert {r.signer.organization for r in reps} == {"Zhang San Trading", "Second Signer Ltd"}


def test_embedded_crls_in_signed_data(pki):
    """CRLs carried in SignedData.crls serve as offline revocation data for that signature only."""
    from asn1crypto import cms, crl as acrl
    from cryptography.hazmat.primitives import serialization

    def with_crls(sig: bytes, crls) -> bytes:
        ci = cms.ContentInfo.load(sig)
        ci["content"]["crls"] = [cms.RevocationInfoChoice(
            name="crl", value=acrl.CertificateList.load(c.public_bytes(serialization.Encoding.DER))) for c in crls]
        return ci.dump(force=True)

    victim = pki.leaf("Embedded Crl Ltd", ku=dict(digital_signature=True))
    base = pyhanko_sign(pki, victim, DATA, tsa=False)
    v = Verifier([pki.root.cert], revocation=OFFLINE_HARD_FAIL)
    assert v.verify_cms(base, DATA).sub_indication is SubIndication.TRY_LATER
    good = with_crls(base, [make_crl(pki.inter), make_crl(pki.root)])
    rep = v.verify_cms(good, DATA)
    assert rep.passed, rep.messages
    assert rep.checks.embedded_revocation_data == "2 CRL(s), 0 OCSP response(s)"
    assert {e.origin for e in rep.certificate.revocation} == {"embedded"}
    revoked = with_crls(base, [make_crl(pki.inter, [(victim.cert.serial_number, NOW - DAY)], number=9),
                               make_crl(pki.root)])
    assert v.verify_cms(revoked, DATA).sub_indication is SubIndication.REVOKED
    # the embedded data of one signature does not leak into the next
    assert v.verify_cms(base, DATA).sub_indication is SubIndication.TRY_LATER
