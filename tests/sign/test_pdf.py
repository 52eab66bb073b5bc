"""PAdES signatures made with a SoftHSM2 token key, validated by pyHanko and poppler's pdfsig."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error
from tests.token.pki import minimal_pdf, pem, run


def _validate(path: Path, soft_ca):
    from asn1crypto import x509 as ax509
    from cryptography.hazmat.primitives import serialization
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    root = ax509.Certificate.load(soft_ca.root.public_bytes(serialization.Encoding.DER))
    with path.open("rb") as f:
        reader = PdfFileReader(f)
        (sig,) = reader.embedded_signatures
        vc = ValidationContext(trust_roots=[root], allow_fetching=False, revocation_mode="soft-fail")
        return sig.field_name, validate_pdf_signature(sig, vc)


def _nss_db(tmp_path: Path, soft_ca) -> Path:
    if not shutil.which("certutil"):
        pytest.fail("certutil (Debian package libnss3-tools) is needed to trust the test root for pdfsig")
    db = tmp_path / "nss"
    db.mkdir()
    run("certutil", "-N", "-d", f"sql:{db}", "--empty-password")
    root = tmp_path / "root.pem"
    root.write_bytes(pem(soft_ca.root))
    run("certutil", "-A", "-d", f"sql:{db}", "-n", "unica test root", "-t", "CT,C,C", "-a", "-i", root)
    return db


@pytest.fixture
def pdf(tmp_path) -> Path:
    p = tmp_path / "in.pdf"
    p.write_bytes(minimal_pdf())
    return p


def test_pdf_signature_valid_in_pyhanko_and_pdfsig(unica, enrolled, soft_ca, pdf, tmp_path):
    out = tmp_path / "signed.pdf"
    p = unica("sign", "pdf", str(pdf), str(out), "--key", enrolled.key_uri, "--field", "Seal",
              "--reason", "申报 declaration")
    assert p.returncode == 0, p.stderr
    assert out.read_bytes().startswith(pdf.read_bytes())  # incremental update
    field, status = _validate(out, soft_ca)
    assert field == "Seal"
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert status.signing_cert.sha256 == enrolled.cert.fingerprint(__import__("cryptography").hazmat.primitives.hashes.SHA256())
    db = _nss_db(tmp_path, soft_ca)
    # no -no-ocsp: poppler 22.12 then reports "Unknown issue" even for a trusted chain (the test
    # certificates carry no AIA, so nothing is fetched either way)
    r = subprocess.run(["pdfsig", "-nssdir", f"sql:{db}", str(out)], capture_output=True, text=True)
    assert "Signature Validation: Signature is Valid." in r.stdout, r.stdout + r.stderr
    assert "Certificate Validation: Certificate is Trusted." in r.stdout, r.stdout
    assert "ETSI.CAdES.detached" in r.stdout, r.stdout  # PAdES sub-filter


def test_pdf_tampered_fails(unica, enrolled, soft_ca, pdf, tmp_path):
    out = tmp_path / "signed.pdf"
    assert unica("sign", "pdf", str(pdf), str(out), "--key", enrolled.key_uri).returncode == 0
    data = bytearray(out.read_bytes())
    pos = data.find(b"unica test document")
    data[pos] ^= 0x01
    out.write_bytes(bytes(data))
    _, status = _validate(out, soft_ca)
    assert not status.intact
    db = _nss_db(tmp_path, soft_ca)
    r = subprocess.run(["pdfsig", "-nssdir", f"sql:{db}", str(out)], capture_output=True, text=True)
    assert "Signature is Valid." not in r.stdout, r.stdout


def test_pdf_with_timestamp_is_pades_b_t(unica, enrolled, soft_ca, tsa, pdf, tmp_path):
    out = tmp_path / "signed-t.pdf"
    p = unica("sign", "pdf", str(pdf), str(out), "--key", enrolled.key_uri, "--tsa", tsa.url)
    assert p.returncode == 0, p.stderr
    _, status = _validate(out, soft_ca)
    assert status.intact and status.valid
    assert status.timestamp_validity is not None and status.timestamp_validity.intact


def test_pdf_library_api(enrolled, soft_ca, tmp_path):
    from unica.sign import load_signer, sign_pdf

    src = tmp_path / "a.pdf"
    src.write_bytes(minimal_pdf("library"))
    dst = tmp_path / "b.pdf"
    sign_pdf(src, dst, load_signer(enrolled.key_uri), field="Lib", reason="auto")
    _, status = _validate(dst, soft_ca)
    assert status.intact and status.valid and status.trusted


def test_not_a_pdf(unica, enrolled, tmp_path):
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"hello, not a pdf")
    p = unica("sign", "pdf", str(bad), str(tmp_path / "o.pdf"), "--key", enrolled.key_uri)
    assert_one_line_error(p, "bad.pdf")


def test_pdf_with_rsa_token_key(unica, enrolled_rsa, soft_ca, pdf, tmp_path):
    out = tmp_path / "rsa.pdf"
    p = unica("sign", "pdf", str(pdf), str(out), "--key", enrolled_rsa.key_uri)
    assert p.returncode == 0, p.stderr
    _, status = _validate(out, soft_ca)
    assert status.intact and status.valid and status.trusted
