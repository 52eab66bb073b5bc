"""The DER-level TBSCertificate (unica.ca.tbs) is byte-identical to what cryptography's
CertificateBuilder writes for the same decisions, for every built-in profile and issuer key type."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from unica.ca import engine
from unica.ca.lint import lint_findings
from unica.ca.names import apply_subject_rules
from unica.ca.request import CSRRequest
from unica.hsm.keytypes import default_hash_for, key_identifier, key_type_of
from unica.policies import builtin_names, get_profile, load_profile_file

NOW = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.timezone.utc)
USCC = "91350100M000100Y43"


def _name(*pairs) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, v) for oid, v in pairs])


FULL = _name((NameOID.COUNTRY_NAME, "CN"), (NameOID.ORGANIZATION_NAME, "示例贸易有限公司"),
             (NameOID.ORGANIZATION_IDENTIFIER, USCC), (NameOID.COMMON_NAME, "Declarant 1"))

ISSUER_KEYS = {
    "ec-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ec-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "rsa-3072": lambda: rsa.generate_private_key(65537, 3072),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
}


def _issuer(key, **kw) -> engine.Issuer:
    pub = key.public_key()
    base = dict(name="sub", subject=_name((NameOID.COUNTRY_NAME, "CN"), (NameOID.ORGANIZATION_NAME, "Port"),
                                         (NameOID.COMMON_NAME, "Issuing CA")),
                public_key=pub, ski=key_identifier(pub), not_before=NOW - dt.timedelta(days=1),
                not_after=NOW + dt.timedelta(days=30 * 365), crl_url="http://crl.port.example/sub.crl",
                ocsp_url="http://ocsp.port.example/", ca_issuers_url="http://port.example/sub.cer", path_length=1)
    base.update(kw)
    return engine.Issuer(**base)


def _request(public_key, subject=FULL, sans=()) -> CSRRequest:
    return CSRRequest(public_key=public_key, key_type=key_type_of(public_key), subject=subject,
                      requested_sans=tuple(sans), requested_extensions=("2.5.29.17",) if sans else ())


def reference_tbs(issuer: engine.Issuer, profile, request: CSRRequest, prepared: engine.Prepared) -> bytes:
    """What cryptography's CertificateBuilder writes for the same decisions."""
    subject = apply_subject_rules(profile, request.subject)
    sans = engine.apply_san_rules(profile, request.requested_sans, "request")
    if issuer.is_root and profile.kind == "root-ca":
        issuer = dataclasses.replace(issuer, subject=subject, ski=key_identifier(request.public_key))
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.subject)
         .public_key(request.public_key).serial_number(prepared.serial)
         .not_valid_before(prepared.not_before).not_valid_after(prepared.not_after))
    for value, critical in engine.extensions_for(profile, issuer, request.public_key, subject, sans,
                                                 prepared.serial):
        b = b.add_extension(value, critical)
    key = engine.throwaway_key(issuer.key_type)
    return b.sign(key, default_hash_for(key.public_key())).tbs_certificate_bytes


CASES = {  # profile -> (subject, SANs) it accepts
    "agency-sign": (FULL, [x509.RFC822Name("clerk@customs.example.cn")]),
    "enterprise-auth": (FULL, [x509.DNSName("trade.example.cn"), x509.RFC822Name("it@trade.example.cn")]),
    "enterprise-sign": (FULL, []),
    "ocsp-signer": (_name((NameOID.COMMON_NAME, "OCSP signer")), []),
    "operator": (_name((NameOID.COUNTRY_NAME, "CN"), (NameOID.ORGANIZATION_NAME, "Port"),
                       (NameOID.COMMON_NAME, "Operator Zhao")), [x509.RFC822Name("zhao@port.example.cn")]),
    "root-ca": (_name((NameOID.COUNTRY_NAME, "CN"), (NameOID.ORGANIZATION_NAME, "Port"),
                      (NameOID.COMMON_NAME, "Root")), []),
    "sub-ca": (_name((NameOID.COUNTRY_NAME, "CN"), (NameOID.ORGANIZATION_NAME, "Port"),
                     (NameOID.COMMON_NAME, "Sub")), []),
    "timestamping": (_name((NameOID.COUNTRY_NAME, "CN"), (NameOID.ORGANIZATION_NAME, "Port"),
                           (NameOID.COMMON_NAME, "TSA")), []),
    "tls-server": (x509.Name([]), [x509.DNSName("www.port.example"),
                                   x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
                                   x509.IPAddress(ipaddress.ip_address("2001:db8::7"))]),
}


def test_every_builtin_profile_has_a_case():
    # the GM/T 0015 profiles take SM2 keys only, which cryptography's builder cannot sign with:
    # their template bytes are checked against hand-written DER in tests/gm/test_gmt0015.py
    assert set(CASES) == {n for n in builtin_names() if not n.endswith("-gm")}


@pytest.mark.parametrize("issuer_type", sorted(ISSUER_KEYS))
@pytest.mark.parametrize("profile_name", sorted(CASES))
def test_tbs_is_what_certificate_builder_writes(issuer_type, profile_name):
    profile = get_profile(profile_name)
    issuer_key = ISSUER_KEYS[issuer_type]()
    issuer = _issuer(issuer_key, is_root=profile.kind == "root-ca")
    subject, sans = CASES[profile_name]
    leaf = ec.generate_private_key(ec.SECP384R1() if profile.kind == "root-ca" else ec.SECP256R1()).public_key()
    if profile.kind == "root-ca":
        leaf = issuer.public_key if key_type_of(issuer.public_key) in profile.key_types else leaf
    request = _request(leaf, subject, sans)
    for _ in range(2):  # the second certificate comes from the cached template
        p = engine.prepare(issuer, profile, request, now=NOW, lint=False)
        assert p.tbs_der == reference_tbs(issuer, profile, request, p)


def test_partitioned_crl_urls_name_constraints_policies_and_far_dates(tmp_path):
    from tests.ca.test_ca_e2e import CONSTRAINED

    # the operator profile of the end-to-end test, valid long enough to reach GeneralizedTime
    (tmp_path / "constrained.toml").write_text(CONSTRAINED.replace('validity = "5y"', 'validity = "40y"'))
    profile = load_profile_file(tmp_path / "constrained.toml")
    issuer = _issuer(ec.generate_private_key(ec.SECP256R1()), crl_shards=16, path_length=None,
                     crl_url="http://crl.port.example/sub-{shard}.crl", not_after=NOW + dt.timedelta(days=60 * 365))
    subject = CASES["sub-ca"][0]
    urls = set()
    for _ in range(40):  # serials land in different shards: different CRL URLs from one template
        request = _request(ec.generate_private_key(ec.SECP256R1()).public_key(), subject)
        p = engine.prepare(issuer, profile, request, now=NOW, lint=False)
        assert p.not_after.year >= 2050  # GeneralizedTime
        assert p.tbs_der == reference_tbs(issuer, profile, request, p)
        cdp = x509.load_der_x509_certificate(
            _cert(p)).extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        urls.add(cdp[0].full_name[0].value)
    assert len(urls) > 4


def _cert(p: engine.Prepared) -> bytes:
    from unica import der
    return der.seq(p.tbs_der, p.signature_algorithm_der, der.bit_string(engine._placeholder_signature("ec-p256")))


def test_the_lint_copy_is_linted():
    """With lint on, the certificate pkilint sees is the prepared TBSCertificate; a clean one
    passes and the same TBS with a broken extension is reported."""
    profile = get_profile("enterprise-sign")
    issuer = _issuer(ec.generate_private_key(ec.SECP256R1()))
    p = engine.prepare(issuer, profile, _request(ec.generate_private_key(ec.SECP256R1()).public_key()), now=NOW)
    assert p.linted and lint_findings(_cert(p)) == []
    broken = p.tbs_der.replace(b"\x06\x03\x55\x1d\x0f\x01\x01\xff", b"\x06\x03\x55\x1d\x0f\x01\x01\x00")
    assert broken != p.tbs_der  # keyUsage marked non-critical
    assert lint_findings(_cert(dataclasses.replace(p, tbs_der=broken)))
