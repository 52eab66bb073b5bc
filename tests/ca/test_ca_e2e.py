"""End to end from the CLI: root on SoftHSM2 -> sub CAs (file key, token key) -> a certificate
for every built-in end-entity profile from an ``openssl req`` CSR; openssl verifies each,
pkilint (PKIX certificate and signer/signee chain) reports nothing at WARNING or above."""

from __future__ import annotations

import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.ca.conftest import count_rows, lint_cert, lint_chain, openssl_csr, openssl_verify

USCC = "91350100M000100Y43"
REQUESTS = {
    "enterprise-sign": ("/C=CN/O=测试科技有限公司/organizationIdentifier=" + USCC + "/CN=张三", "email:zhang@example.cn"),
    "enterprise-auth": ("/C=CN/ST=福建/O=测试科技有限公司/organizationIdentifier=NTRCN-9144030071526726XG/CN=李四",
                        "DNS:client.example.cn"),
    "agency-sign": ("/C=CN/O=某市人民政府办公厅/OU=信息中心/CN=王五", "email:wang@gov.example.cn"),
    "tls-server": ("/CN=www.example.cn", "DNS:www.example.cn,DNS:example.cn,IP:192.0.2.7"),
    "ocsp-signer": ("/C=CN/O=统一测试/CN=OCSP Responder", None),
    "timestamping": ("/C=CN/O=统一测试/CN=Time-Stamping Authority", None),
}


def test_ca_certificates_lint_clean(pki):
    assert lint_cert(pki.root_pem).stdout.strip() == ""
    assert lint_chain(pki.root_pem, pki.root_pem).stdout.strip() == ""
    for name, pem in pki.subs.items():
        assert openssl_verify(pki.root_pem, None, pem).returncode == 0
        lint = lint_cert(pem)
        assert lint.returncode == 0 and lint.stdout.strip() == "", (name, lint.stdout, lint.stderr)
        chain = lint_chain(pki.root_pem, pem)
        assert chain.returncode == 0 and chain.stdout.strip() == "", (name, chain.stdout, chain.stderr)
    root = x509.load_pem_x509_certificate(pki.root_pem.read_bytes())
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    listed = json.loads(pki.ok("ca", "list", "--json").stdout)
    assert {c["name"] for c in listed} >= {pki.root, *pki.subs}
    assert all(c["status"] == "active" for c in listed if c["name"] in pki.subs)
    tok = next(c for c in listed if c["name"].startswith("sub-tok"))
    assert tok["key_uri"].startswith("pkcs11:") and tok["parent"] == pki.root


@pytest.mark.parametrize("profile", sorted(REQUESTS))
@pytest.mark.parametrize("sub_kind", ["sub-soft", "sub-tok"])
def test_issue_every_builtin_end_entity_profile(pki, tmp_path, profile, sub_kind):
    sub = next(n for n in pki.subs if n.startswith(sub_kind))
    subj, san = REQUESTS[profile]
    csr = openssl_csr(tmp_path, subj, san=san, key="ec:P-256" if sub_kind == "sub-soft" else "rsa:2048")
    out = tmp_path / "cert.pem"
    p = pki.ok("issue", "--ca", sub, "--profile", profile, "--csr", str(csr), "--out", str(out),
               "--requester", "test-e2e")
    assert "issued serial" in p.stdout
    v = openssl_verify(pki.root_pem, pki.subs[sub], out)
    assert v.returncode == 0, v.stdout + v.stderr
    lint = lint_cert(out)
    assert lint.returncode == 0 and lint.stdout.strip() == "", lint.stdout + lint.stderr
    chain = lint_chain(pki.subs[sub], out)
    assert chain.returncode == 0 and chain.stdout.strip() == "", chain.stdout + chain.stderr

    cert = x509.load_pem_x509_certificate(out.read_bytes())
    assert cert.serial_number.bit_length() > 64
    assert cert.issuer == x509.load_pem_x509_certificate(pki.subs[sub].read_bytes()).subject
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    if profile == "timestamping":
        assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    if profile == "ocsp-signer":
        assert list(eku.value) == [ExtendedKeyUsageOID.OCSP_SIGNING]
        cert.extensions.get_extension_for_class(x509.OCSPNoCheck)
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    if profile == "enterprise-sign":
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.digital_signature and ku.content_commitment and not ku.key_encipherment
        assert list(eku.value) == [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION,
                                   x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")]  # issue #11 item 5
        org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0]
        assert org.value == "测试科技有限公司" and org._type.name == "UTF8String"
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)[0].value == USCC
    if profile != "ocsp-signer":
        dp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        assert dp[0].full_name[0].value == f"http://crl.example.cn/{sub}.crl"

    serial = format(cert.serial_number, "x")
    if sub_kind == "sub-soft":  # the store's view, through the CLI (once per profile is enough)
        shown = json.loads(pki.ok("cert", "show", serial, "--json").stdout)
        assert shown["status"] == "valid" and shown["profile"] == profile and shown["ca"] == sub
        assert shown["requester"] == "test-e2e"
        assert pki.ok("cert", "export", serial).stdout.encode() == out.read_bytes()
    # the certificate was stored in place of the recorded TBSCertificate (it contains it; the
    # store's UPDATE applied only because the row held exactly that TBS)
    from sqlalchemy import create_engine, text

    eng = create_engine(pki.db_url())
    with eng.connect() as c:
        tbs, der = c.execute(text("SELECT tbs_der, der FROM certificates WHERE serial = :s"), {"s": serial}).one()
    eng.dispose()
    assert tbs is None and der == cert.public_bytes(serialization.Encoding.DER)


def test_cert_list_filters_and_audit(pki, tmp_path):
    sub = next(n for n in pki.subs if n.startswith("sub-soft"))
    csr = openssl_csr(tmp_path, "/CN=list.example.cn", san="DNS:list.example.cn")
    pki.ok("issue", "--ca", sub, "--profile", "tls-server", "--csr", str(csr), "--out", str(tmp_path / "a.pem"),
           "--requester", "lister")
    rows = json.loads(pki.ok("cert", "list", "--issued-by", sub, "--profile", "tls-server", "--json").stdout)
    assert rows and all(r["ca"] == sub and r["profile"] == "tls-server" for r in rows)
    mine = json.loads(pki.ok("cert", "list", "--requester", "lister", "--json").stdout)
    assert len(mine) == 1 and mine[0]["subject"] == "CN=list.example.cn"
    # tls-server lives 397 days: expiring within 400d yes, within 30d no
    assert mine[0]["serial"] in {r["serial"] for r in json.loads(
        pki.ok("cert", "list", "--expiring", "400d", "--json").stdout)}
    assert mine[0]["serial"] not in {r["serial"] for r in json.loads(
        pki.ok("cert", "list", "--expiring", "30d", "--json").stdout)}
    assert "SERIAL" in pki.ok("cert", "list", "--status", "valid").stdout
    assert count_rows(pki.db_url(), "audit_log", "WHERE event = 'certificate.issued'") >= 1


def test_no_lint_is_explicit_and_audited(pki, tmp_path):
    sub = next(n for n in pki.subs if n.startswith("sub-soft"))
    csr = openssl_csr(tmp_path, "/CN=bulk.example.cn", san="DNS:bulk.example.cn")
    p = pki.ok("issue", "--ca", sub, "--profile", "tls-server", "--csr", str(csr), "--out", str(tmp_path / "b.pem"),
               "--no-lint", "--json")
    serial = json.loads(p.stdout)["serial"]
    assert json.loads(p.stdout)["linted"] is False
    from sqlalchemy import create_engine, text

    eng = create_engine(pki.db_url())
    with eng.connect() as c:
        details = c.execute(text("SELECT details FROM audit_log WHERE event = 'certificate.issued' AND target = :s"),
                            {"s": serial}).scalar_one()
    eng.dispose()
    assert "--no-lint" in json.loads(details)["lint"]


def test_chain_output_and_ca_show(pki, tmp_path):
    sub = next(n for n in pki.subs if n.startswith("sub-tok"))
    csr = openssl_csr(tmp_path, "/CN=chain.example.cn", san="DNS:chain.example.cn")
    out = tmp_path / "chain.pem"
    pki.ok("issue", "--ca", sub, "--profile", "tls-server", "--csr", str(csr), "--out", str(out), "--chain")
    certs = x509.load_pem_x509_certificates(out.read_bytes())
    assert len(certs) == 3 and certs[2].subject == certs[2].issuer
    shown = json.loads(pki.ok("ca", "show", sub, "--json").stdout)
    assert shown["crl_url"].endswith(f"{sub}.crl") and shown["ocsp_url"] == "http://ocsp.example.cn/"
    exported = pki.ok("ca", "export", sub, "--chain").stdout
    assert exported.count("BEGIN CERTIFICATE") == 2


def test_external_parent_and_shards(pki, tmp_path):
    """A sub CA whose parent is another CA (here: another unica home's root, via the CSR)."""
    other = {"UNICA_HOME": str(tmp_path / "other")}
    pki.ok("init", env=other)
    pki.ok("ca", "create-root", "ext-root", "--subject", "C=CN,O=外部根,CN=External Root", "--key-type", "ec-p256",
           env=other)
    csr = tmp_path / "ext.csr"
    name = "ext-sub-" + tmp_path.name[-6:].replace("_", "")
    pki.ok("ca", "create-sub", name, "--csr-out", str(csr), "--subject", "C=CN,O=统一测试,CN=External Sub",
           "--key-type", "ec-p256")
    pending = json.loads(pki.ok("ca", "show", name, "--json").stdout)
    assert pending["status"] == "pending"
    p = pki.run("issue", "--ca", name, "--profile", "tls-server", "--csr", str(csr))
    assert p.returncode != 0 and "awaiting its certificate" in p.stderr
    signed = tmp_path / "ext-sub.pem"
    pki.ok("issue", "--ca", "ext-root", "--profile", "sub-ca", "--csr", str(csr), "--out", str(signed), "--chain",
           env=other)
    pki.ok("ca", "import-cert", name, str(signed))
    pki.ok("ca", "set", name, "--crl-url", "http://crl.example.cn/ext/{shard}.crl", "--crl-shards", "4")
    leaf_csr = openssl_csr(tmp_path, "/CN=ext.example.cn", san="DNS:ext.example.cn")
    leaf = tmp_path / "leaf.pem"
    pki.ok("issue", "--ca", name, "--profile", "tls-server", "--csr", str(leaf_csr), "--out", str(leaf), "--chain")
    ext_root = tmp_path / "ext-root.pem"
    pki.ok("ca", "export", "ext-root", "--out", str(ext_root), env=other)
    v = openssl_verify(ext_root, signed, leaf)
    assert v.returncode == 0, v.stdout + v.stderr
    certs = x509.load_pem_x509_certificates(leaf.read_bytes())
    assert len(certs) == 3  # leaf, ext-sub, ext-root (kept from the imported chain)
    dp = certs[0].extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert dp[0].full_name[0].value == f"http://crl.example.cn/ext/{certs[0].serial_number % 4}.crl"
    leaf1 = tmp_path / "leaf1.pem"
    leaf1.write_bytes(certs[0].public_bytes(serialization.Encoding.PEM))
    assert lint_cert(leaf1).stdout.strip() == ""


CONSTRAINED = '''description = "Issuing CA limited to example.cn, with a certificate policy"
kind = "sub-ca"
validity = "5y"
[key_usage]
usages = ["digitalSignature", "keyCertSign", "cRLSign"]
[basic_constraints]
path_length = 0
[[certificate_policies]]
oid = "1.3.6.1.4.1.55555.1.2"
cps_uri = "https://pki.example.cn/cps"
user_notice = "仅限内部使用"
[keys]
allowed = ["ec-p256"]
[subject]
required = ["countryName", "organizationName", "commonName"]
[name_constraints]
permitted_dns = ["example.cn"]
excluded_ip = ["10.0.0.0/8"]
'''


def test_operator_ca_profile_with_policies_and_name_constraints(pki, tmp_path):
    from tests.conftest import assert_one_line_error

    prof = pki.home / "profiles" / "constrained-sub.toml"
    prof.write_text(CONSTRAINED, encoding="utf-8")
    name = "constrained-" + tmp_path.name[-6:].replace("_", "")
    try:
        assert "OK" in pki.ok("profile", "check", str(prof)).stdout
        pki.ok("ca", "create-sub", name, "--parent", pki.root, "--profile", "constrained-sub",
               "--subject", "C=CN,O=统一测试,CN=Constrained CA", "--key-type", "ec-p256")
        sub = tmp_path / "sub.pem"
        pki.ok("ca", "export", name, "--out", str(sub))
        assert lint_cert(sub).stdout.strip() == "" and lint_chain(pki.root_pem, sub).stdout.strip() == ""
        cert = x509.load_pem_x509_certificate(sub.read_bytes())
        pol = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value[0]
        assert pol.policy_identifier.dotted_string == "1.3.6.1.4.1.55555.1.2"
        assert cert.extensions.get_extension_for_class(x509.NameConstraints).critical
        ok_csr = openssl_csr(tmp_path, "/CN=www.example.cn", san="DNS:www.example.cn")
        leaf = tmp_path / "leaf.pem"
        pki.ok("issue", "--ca", name, "--profile", "tls-server", "--csr", str(ok_csr), "--out", str(leaf))
        assert openssl_verify(pki.root_pem, sub, leaf).returncode == 0
        assert lint_chain(sub, leaf).stdout.strip() == ""
        before = pki.cert_rows()
        for san, needle in (("DNS:www.example.com", "outside"), ("DNS:a.example.cn,IP:10.1.2.3", "excluded")):
            bad = openssl_csr(tmp_path, "/CN=x.example.cn", san=san)
            assert_one_line_error(pki.run("issue", "--ca", name, "--profile", "tls-server", "--csr", str(bad)),
                                  needle, "name constraints" if needle == "excluded" else "permitted names")
        assert pki.cert_rows() == before
    finally:
        prof.unlink()
