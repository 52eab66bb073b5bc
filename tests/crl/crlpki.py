"""Helpers: a throwaway PKI built with ``cryptography`` directly (the CA core does not exist yet)."""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


@dataclass(frozen=True)
class PkiCA:
    name: str
    key: object
    cert: x509.Certificate
    pem_path: Path


def make_key(kind: str):
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind in ("rsa", "rsa-pss"):
        return rsa.generate_private_key(65537, 2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(kind)


def sig_hash(kind: str):
    return None if kind == "ed25519" else hashes.SHA384() if kind == "p384" else hashes.SHA256()


def make_ca(tmp: Path, cn: str, kind: str = "p256") -> PkiCA:
    key = make_key(kind)
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "unica test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(key, sig_hash(kind)))
    path = tmp / f"{cn.replace(' ', '_')}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return PkiCA(cn, key, cert, path)


def openssl_crl_verify(crl_path: Path, ca: PkiCA) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(crl_path), "-CAfile", str(ca.pem_path),
                           "-noout", "-verify"], capture_output=True, text=True)


def pkilint_crl(crl_path: Path, crl_type: str = "CRL") -> subprocess.CompletedProcess:
    return subprocess.run(["lint_crl", "lint", "-t", crl_type, "-p", "PKIX", "-s", "WARNING", str(crl_path)],
                          capture_output=True, text=True)


