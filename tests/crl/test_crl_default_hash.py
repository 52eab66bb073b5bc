"""Issue #11 item 14: without an explicit ``hash_alg`` a CRL is signed with the hash the issuance
code pairs with the CA key (``default_hash_for``): SHA-384 for P-384, SHA-512 for P-521, SHA-256
for P-256 and RSA, none for Ed25519 -- checked by cryptography and by ``openssl crl -verify``."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from unica.ca.crl import RevokedEntry, crl_to_file
from unica.hsm.keytypes import default_hash_for

from crlpki import NOW, PkiCA, openssl_crl_verify

KEYS = {
    "p256": (lambda: ec.generate_private_key(ec.SECP256R1()), hashes.SHA256),
    "p384": (lambda: ec.generate_private_key(ec.SECP384R1()), hashes.SHA384),
    "p521": (lambda: ec.generate_private_key(ec.SECP521R1()), hashes.SHA512),
    "rsa-3072": (lambda: rsa.generate_private_key(65537, 3072), hashes.SHA256),
    "ed25519": (ed25519.Ed25519PrivateKey.generate, None),
}


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_crl_hash_follows_the_key(kind, tmp_path):
    make, expected = KEYS[kind]
    key = make()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"CRL hash {kind}")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, default_hash_for(key)))  # the certificate: issuance's choice
    pem = tmp_path / "ca.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path = tmp_path / "ca.crl"
    crl_to_file(path, issuer=cert, signing_key=key, crl_number=1, this_update=NOW,
                next_update=NOW + dt.timedelta(days=1), entries=[RevokedEntry(7, NOW - dt.timedelta(hours=1))])
    crl = x509.load_der_x509_crl(path.read_bytes())
    got = crl.signature_hash_algorithm
    if expected is None:
        assert got is None and cert.signature_hash_algorithm is None
    else:
        assert isinstance(got, expected) and isinstance(cert.signature_hash_algorithm, expected)
        assert crl.signature_algorithm_oid == cert.signature_algorithm_oid
    assert crl.is_signature_valid(key.public_key())
    v = openssl_crl_verify(path, PkiCA(kind, key, cert, pem))
    assert v.returncode == 0 and "verify OK" in v.stderr + v.stdout, v.stdout + v.stderr
