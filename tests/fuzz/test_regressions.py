"""One test per input the fuzz tests found breaking a parser (each fixed in its own commit),
built from the real seeds so they stay valid: the input, and the typed outcome now expected.
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from tests.conftest import assert_one_line_error
from tests.fuzz.harness import resign, tbs_of
from unica import der
from unica.errors import MalformedInput, URIError


def _retag_first(buf: bytes, needle: bytes, tag: int) -> bytes:
    b = bytearray(buf)
    b[b.index(needle)] = tag
    return bytes(b)


def cert_version5(seeds) -> bytes:
    """The leaf with its version INTEGER 2 (v3) changed to 5: InvalidVersion in cryptography."""
    return seeds.signer.der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x05", 1)


def cert_cn_as(seeds, tag: int) -> bytes:
    """The leaf, re-signed by its CA, with the subject CN string re-tagged (0x02 INTEGER:
    KeyError; 0x03 BIT STRING: TypeError when cryptography reads the name)."""
    tbs = _retag_first(tbs_of(seeds.signer.der), b"\x0c\x0bFuzz Signer", tag)
    return resign(seeds.signer.der, tbs, seeds.inter.key)


def test_file_uri_not_utf8():
    from unica.hsm.uri import parse_key_uri

    with pytest.raises(URIError, match="not UTF-8"):
        parse_key_uri("file:%80")


def test_csr_version_1(seeds):
    from unica.ca.request import parse_csr

    bad = seeds.csrs[0].replace(b"\x02\x01\x00", b"\x02\x01\x01", 1)
    with pytest.raises(MalformedInput):
        parse_csr(bad, "v1.csr")


@pytest.mark.parametrize("tag", [0x02, 0x03])
def test_csr_subject_string_type(seeds, tag):
    from unica.ca.request import parse_csr

    csr, key = seeds.signed_csrs[0]
    tbs = _retag_first(tbs_of(csr), b"\x0c\x06csr ec", tag)
    with pytest.raises(MalformedInput, match="subject"):
        parse_csr(resign(csr, tbs, key), "odd.csr")


@pytest.mark.parametrize("make", ["version5", "cn-integer", "cn-bitstring"])
def test_certificate_loaders(seeds, make):
    from unica.hsm.objects import load_certificate_bytes
    from unica.verify import OFF, validate_certificate
    from unica.verify._util import load_certificates

    data = {"version5": lambda: cert_version5(seeds), "cn-integer": lambda: cert_cn_as(seeds, 0x02),
            "cn-bitstring": lambda: cert_cn_as(seeds, 0x03)}[make]()
    with pytest.raises(MalformedInput):
        load_certificate_bytes(data, "cert.der")
    with pytest.raises(MalformedInput):
        load_certificates(data, "certificate")
    with pytest.raises(MalformedInput):
        validate_certificate(data, trust=[seeds.root.der], intermediates=[seeds.inter.der], revocation=OFF)


def test_import_cert_damaged_spki_and_names(seeds, pending_ca):
    from unica.ca.authority import import_cert

    store, cert, parent = pending_ca
    good = cert.public_bytes(Encoding.DER)
    p256 = bytes.fromhex("06082a8648ce3d030107")
    for bad in (good.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x05", 1),  # version 5
                good.replace(p256, bytes.fromhex("06082a8648ce3d030108"), 1),  # unknown curve OID
                _retag_first(good, b"\x0c\x11Fuzz External Sub", 0x02)):  # CN as INTEGER
        with pytest.raises(MalformedInput):
            import_cert(store, "fuzzsub", bad, "sub.der")


def test_cms_with_unreadable_certificates(seeds):
    """A CMS (made by unica.sign) whose CA certificate is replaced by one of version 5, or by
    one whose CN is an INTEGER: a report, not an exception."""
    from unica.verify import OFF, SignatureReport, Verifier

    v = Verifier([seeds.root.der], revocation=OFF)
    cn_int = next(c for c in (cert_cn_as(seeds, 0x02) for _ in range(50)) if len(c) == len(seeds.signer.der))
    for bad in (cert_version5(seeds), cn_int):  # same length: the CMS framing stays intact
        sig = seeds.cms[0].replace(seeds.signer.der, bad)
        assert isinstance(v.verify_cms(sig, seeds.cms_data), SignatureReport)
    # the extra (CA) certificate unreadable: ignored with a message (it raised ValueError)
    sig = seeds.cms[0].replace(seeds.inter.der, seeds.inter.der.replace(b"\xa0\x03\x02\x01\x02",
                                                                        b"\xa0\x03\x02\x01\x05", 1))
    assert isinstance(v.verify_cms(sig, seeds.cms_data), SignatureReport)


def test_crl_explicit_version_0_and_odd_issuer(seeds):
    from unica.verify import OFFLINE_HARD_FAIL, ValidationReport, validate_certificate
    from unica.verify.revocation import _load_crl

    crl = seeds.crls[0]
    v0 = crl.replace(b"\x02\x01\x01", b"\x02\x01\x00", 1)
    with pytest.raises(MalformedInput):
        _load_crl(v0)
    odd_issuer = _retag_first(crl, b"\x0c\x0fFuzz Issuing CA", 0x02)
    with pytest.raises(MalformedInput):
        _load_crl(odd_issuer)
    rep = validate_certificate(seeds.signer.der, trust=[seeds.root.der], intermediates=[seeds.inter.der],
                               revocation=OFFLINE_HARD_FAIL, crls=[crl])
    assert isinstance(rep, ValidationReport)


def test_ocsp_response_unknown_signature_algorithm(seeds):
    """ecdsa-with-SHA256 (1.2.840.10045.4.3.2) changed to an unknown arc: UnsupportedAlgorithm
    was raised out of validate_certificate; now the response is not used, and with no other
    revocation data the result is INDETERMINATE/TRY_LATER, with the reason in the messages."""
    from unica.verify import OFFLINE_HARD_FAIL, Indication, SubIndication, validate_certificate

    resp = seeds.ocsp_responses[0]
    sig_alg = bytes.fromhex("06082a8648ce3d040302")
    assert sig_alg in resp
    bad = resp.replace(sig_alg, bytes.fromhex("06082a8648ce3d040309"))
    ocsp.load_der_ocsp_response(bad)  # still loads: the damage shows only when used
    rep = validate_certificate(seeds.signer.der, trust=[seeds.root.der], intermediates=[seeds.inter.der],
                               revocation=OFFLINE_HARD_FAIL, ocsp_responses=[bad])
    assert rep.indication is Indication.INDETERMINATE and rep.sub_indication is SubIndication.TRY_LATER, rep
    assert any("revocation" in m for m in rep.messages), rep


def test_cli_verify_cert_hostile_files(seeds, unica, tmp_path):
    """The CLI front of the loaders: one line on stderr, no traceback."""
    root = tmp_path / "root.pem"
    root.write_bytes(seeds.root.cert.public_bytes(Encoding.PEM))
    for name, data in (("v5.der", cert_version5(seeds)), ("cn-int.der", cert_cn_as(seeds, 0x02)),
                       ("garbage.pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")):
        f = tmp_path / name
        f.write_bytes(data)
        p = unica("verify", "cert", str(f), "--trust", str(root), "--offline")
        assert_one_line_error(p, name)


@pytest.fixture(scope="module")
def pending_ca(seeds, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    try:
        yield _make_pending(seeds, tmp_path_factory, mp)
    finally:
        mp.undo()


def _make_pending(seeds, tmp_path_factory, mp):
    from unica.ca.authority import KeySpec, create_external_sub
    from unica.store import open_store

    home = tmp_path_factory.mktemp("regress-home")
    mp.setenv("UNICA_HOME", str(home))
    mp.setenv("UNICA_PASSPHRASE", "fuzz-passphrase-1")
    store = open_store(f"sqlite:///{home / 'unica.db'}", create=True)
    csr_path = home / "sub.csr"
    create_external_sub(store, "fuzzsub", "CN=Fuzz External Sub,O=Fuzz Org,C=CN",
                        KeySpec(key_type="ec-p256", passphrase="fuzz-passphrase-1"), csr_path)
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    now = dt.datetime.now(dt.timezone.utc)
    parent = seeds.root
    cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(parent.cert.subject)
            .public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(parent.key, hashes.SHA256()))
    return store, cert, parent


@pytest.mark.parametrize("case", ["params-00-00", "serial-non-minimal", "long-form-length", "nonce-long-form"])
def test_ocsp_non_der_certid_is_malformed(seeds, case):
    """CertIDs (and nonces) are echoed verbatim in responses: a non-DER one used to get a
    'successful' answer that clients could not parse."""
    from unica.ocsp.request import MalformedRequest, parse_request

    h = b"\x04\x14" + b"a" * 20
    alg = der.seq(der.oid("1.3.14.3.2.26"), b"\x05\x00")
    certid = {"params-00-00": der.seq(der.seq(der.oid("1.3.14.3.2.26"), b"\x00\x00"), h, h, der.integer(5)),
              "serial-non-minimal": der.seq(alg, h, h, b"\x02\x02\x00\x05"),
              "long-form-length": der.seq(alg, b"\x04\x81\x14" + b"a" * 20, h, der.integer(5)),
              "nonce-long-form": der.seq(alg, h, h, der.integer(5))}[case]
    tbs = [der.seq(der.seq(certid))]
    if case == "nonce-long-form":
        tbs.append(der.tlv(0xA2, der.seq(der.seq(der.oid("1.3.6.1.5.5.7.48.1.2"),
                                                 der.octet_string(b"\x04\x81\x10" + b"n" * 16)))))
    with pytest.raises(MalformedRequest):
        parse_request(der.seq(der.seq(*tbs)))
