"""A CRL and an OCSP response signed by a key on a PKCS#11 token (SoftHSM2): the DER-level
encoders only call ``key.sign`` / ``key.public_key``, so token keys work unchanged."""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from crlpki import NOW, PkiCA, openssl_crl_verify, pkilint_crl
from unica.ca.crl import RevokedEntry, crl_to_file

pytestmark = pytest.mark.skipif(not shutil.which("softhsm2-util"), reason="SoftHSM2 is not installed")


@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-2048"])
def test_crl_and_ocsp_signed_on_token(tmp_path: Path, token_label: str, key_type: str):
    from unica.hsm import generate_key
    from unica.ocsp import GOOD, ResponseSigner
    from unica.ocsp.response import cert_id_for

    key = generate_key(f"pkcs11:token={token_label};object=crl-{key_type}-{secrets.token_hex(4)}", key_type)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Token CRL CA {key_type}")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    pem = tmp_path / "ca.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ca = PkiCA("token", key, cert, pem)
    path = tmp_path / "token.crl"
    entries = [RevokedEntry(1000 + i, NOW - dt.timedelta(minutes=i), x509.ReasonFlags.superseded) for i in range(50)]
    crl_to_file(path, issuer=cert, signing_key=key, crl_number=1, this_update=NOW,
                next_update=NOW + dt.timedelta(days=1), entries=entries)
    assert x509.load_der_x509_crl(path.read_bytes()).is_signature_valid(key.public_key())
    assert openssl_crl_verify(path, ca).returncode == 0
    lint = pkilint_crl(path)
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout

    signer = ResponseSigner(cert, cert, key)
    # the response's own "now": NOW is the run's start (module import), and a run can be longer
    # than the response's hour of validity by the time this test comes (openssl: status expired)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    resp = signer.sign(cert_id_for(cert, 1000), GOOD, now, now + dt.timedelta(hours=1))
    out = tmp_path / "resp.der"
    out.write_bytes(resp.der)
    parsed = ocsp.load_der_ocsp_response(resp.der)
    assert parsed.certificate_status == ocsp.OCSPCertStatus.GOOD
    p = subprocess.run(["openssl", "ocsp", "-respin", str(out), "-issuer", str(pem), "-serial", "1000",
                        "-CAfile", str(pem), "-no_nonce"], capture_output=True, text=True)
    assert "Response verify OK" in p.stderr and "1000: good" in p.stdout, p.stdout + p.stderr
