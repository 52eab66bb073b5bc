"""Enrollment on a real SoftHSM2 token: keygen, CSR on the token, import-cert, renew, enroll."""

from __future__ import annotations

import json

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.conftest import SOFTHSM_MODULE, assert_one_line_error
from tests.token.pki import init_token_in_process, new_token_label, pem, run


def _pkcs11_tool_objects(token: str, pin: str) -> str:
    return run("pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", token, "--login", "--pin", pin, "-O").stdout


def _blocks(listing: str) -> list[dict]:
    out, cur = [], None
    for line in listing.splitlines():
        if line and not line.startswith(" "):
            cur = {"head": line.strip()}
            out.append(cur)
        elif cur is not None and ":" in line:
            k, _, v = line.strip().partition(":")
            cur[k.strip()] = v.strip()
    return out


def test_pkcs11_tool_sees_key_pair_and_certificate_with_one_id(enrolled):
    import os

    blocks = _blocks(_pkcs11_tool_objects(enrolled.token, os.environ["UNICA_PIN"]))
    priv = [b for b in blocks if b["head"].startswith("Private Key Object")]
    pub = [b for b in blocks if b["head"].startswith("Public Key Object")]
    certs = [b for b in blocks if b["head"].startswith("Certificate Object")]
    assert len(priv) == 1 and len(pub) == 1
    ids = {priv[0]["ID"], pub[0]["ID"]}
    assert len(ids) == 1
    (kid,) = ids
    ee = [c for c in certs if c["ID"] == kid]
    assert len(ee) == 1, certs
    assert ee[0]["label"] == priv[0]["label"] == "signer"
    access = priv[0]["Access"]
    assert "sensitive" in access and "never extractable" in access and "extractable" not in access.replace(
        "never extractable", "")
    # CKA_ID is the key identifier, which is the certificate's subject key identifier
    ski = enrolled.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert kid == ski.hex()
    # the chain went on too
    assert {c["label"] for c in certs} >= {"ca:unica test sub CA", "ca:unica test root"}


def test_csr_verifies_with_openssl_and_carries_utf8_subject_and_uscc(enrolled):
    r = run("openssl", "req", "-in", enrolled.csr_file, "-verify", "-noout", check=False)
    assert r.returncode == 0 and "verify OK" in (r.stdout + r.stderr), r.stderr
    csr = x509.load_pem_x509_csr(enrolled.csr_file.read_bytes())
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "某某有限公司"
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "张三"
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)[0].value == "91350100M000100Y43"
    # the public key in the request is the token key's
    assert csr.public_key() == enrolled.cert.public_key()


def test_issued_certificate_verifies_with_openssl(enrolled, soft_ca):
    r = run("openssl", "verify", "-CAfile", soft_ca.files["root"], "-untrusted", soft_ca.files["sub"],
            enrolled.cert_file, check=False)
    assert r.returncode == 0 and ": OK" in r.stdout, r.stdout + r.stderr


def test_objects_json_pairs_key_and_certificate(unica, enrolled):
    p = unica("token", "objects", "--token", enrolled.token, "--json")
    assert p.returncode == 0, p.stderr
    objs = json.loads(p.stdout)
    kid = enrolled.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
    mine = [o for o in objs if o["id"] == kid]
    assert sorted(o["kind"] for o in mine) == ["certificate", "private-key", "public-key"]
    priv = next(o for o in mine if o["kind"] == "private-key")
    assert priv["sensitive"] is True and priv["extractable"] is False and priv["never_extractable"] is True
    assert priv["key_type"] == "ec-p256"
    cert = next(o for o in mine if o["kind"] == "certificate")
    assert "张三" in cert["subject"] and "organizationIdentifier=91350100M000100Y43" in cert["subject"]


def test_import_cert_refuses_foreign_certificate(unica, enrolled, soft_ca, tmp_path):
    f = tmp_path / "root.pem"
    f.write_bytes(pem(soft_ca.root))
    p = unica("token", "import-cert", "--token", enrolled.token, str(f))
    assert_one_line_error(p, "matches no key", enrolled.token)
    f.write_text("not a certificate")
    assert_one_line_error(unica("token", "import-cert", "--token", enrolled.token, str(f)), "certificate")


def test_import_cert_is_idempotent(unica, enrolled):
    before = json.loads(unica("token", "objects", "--token", enrolled.token, "--json").stdout)
    p = unica("token", "import-cert", "--token", enrolled.token, str(enrolled.cert_file))
    assert p.returncode == 0, p.stderr
    after = json.loads(unica("token", "objects", "--token", enrolled.token, "--json").stdout)
    assert len(after) == len(before)


def test_bad_subject_and_uscc_are_one_line_errors(unica, enrolled):
    key = enrolled.key_uri
    assert_one_line_error(unica("token", "csr", "--key", key, "--subject", "CN=x,C=CHN"), "C")
    assert_one_line_error(unica("token", "csr", "--key", key, "--subject", "garbage"), "garbage")
    assert_one_line_error(unica("token", "csr", "--key", key, "--subject", "CN=x", "--uscc", "91350100M000100Y44"),
                          "uscc")


def test_keygen_rsa_and_duplicate_label(unica, tmp_path):
    token = new_token_label("kg")
    init_token_in_process(token)
    p = unica("token", "keygen", "--token", token, "--label", "r", "--type", "rsa-2048", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["type"] == "rsa-2048"
    p = unica("token", "keygen", "--token", token, "--label", "r", "--type", "ec-p256")
    assert_one_line_error(p, "already has a key")
    p = unica("token", "csr", "--key", f"pkcs11:token={token};object=r", "--subject", "/C=CN/O=Org/CN=rsa")
    assert p.returncode == 0, p.stderr
    csr = x509.load_pem_x509_csr(p.stdout.encode())
    assert csr.is_signature_valid and csr.subject.rfc4514_string() == "CN=rsa,O=Org,C=CN"


def test_renew_same_key_and_rekey(unica, soft_ca, tmp_path):
    from tests.conftest import run_unica
    from tests.token.pki import enroll_with_cli

    e = enroll_with_cli(run_unica, soft_ca, tmp_path, subject="CN=Renew Co,O=Renew Co,C=CN")
    # renewal: same key, subject taken from the certificate on the token
    out = tmp_path / "renew.csr"
    p = unica("token", "renew", "--key", e.key_uri, "--out", str(out))
    assert p.returncode == 0, p.stderr
    csr = x509.load_pem_x509_csr(out.read_bytes())
    assert csr.public_key() == e.cert.public_key() and csr.subject == e.cert.subject
    new = soft_ca.issue(csr)
    f = tmp_path / "new.pem"
    f.write_bytes(pem(new))
    p = unica("token", "import-cert", "--token", e.token, str(f), "--remove-old", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["removed"] == 1
    certs = [o for o in json.loads(unica("token", "objects", "--token", e.token, "--json").stdout)
             if o["kind"] == "certificate" and "Renew Co" in o["subject"]]
    assert [c["serial"] for c in certs] == [format(new.serial_number, "x")]
    # re-key: a new key pair on the token, the old certificate kept (no --remove-old)
    out2 = tmp_path / "rekey.csr"
    p = unica("token", "renew", "--key", e.key_uri, "--rekey", "--new-label", "signer-2", "--out", str(out2))
    assert p.returncode == 0, p.stderr
    assert "signer-2" in p.stderr
    csr2 = x509.load_pem_x509_csr(out2.read_bytes())
    assert csr2.public_key() != e.cert.public_key() and csr2.subject == e.cert.subject
    f2 = tmp_path / "rekeyed.pem"
    f2.write_bytes(pem(soft_ca.issue(csr2)))
    assert unica("token", "import-cert", "--token", e.token, str(f2)).returncode == 0
    objs = json.loads(unica("token", "objects", "--token", e.token, "--json").stdout)
    labels = sorted(o["label"] for o in objs if o["kind"] == "certificate" and "Renew Co" in o["subject"])
    assert labels == ["signer", "signer-2"]
    doc = tmp_path / "doc"
    doc.write_bytes(b"re-keyed")
    p = unica("sign", "cms", str(doc), "--key", f"pkcs11:token={e.token};object=signer-2")
    assert p.returncode == 0, p.stderr
    r = run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", f"{doc}.p7s", "-content", doc,
            "-CAfile", soft_ca.files["root"], "-purpose", "any", "-out", "/dev/null", check=False)
    assert r.returncode == 0, r.stderr


def test_renew_key_without_certificate_needs_subject(unica):
    token = new_token_label("rn")
    init_token_in_process(token)
    assert unica("token", "keygen", "--token", token, "--label", "k", "--type", "ec-p256").returncode == 0
    p = unica("token", "renew", "--key", f"pkcs11:token={token};object=k")
    assert_one_line_error(p, "no certificate", "--subject")


@pytest.fixture(scope="module")
def local_ca(tmp_path_factory):
    """A local unica CA (the CA core): root and issuing sub CA with encrypted key files."""

    from tests.conftest import run_unica

    home = tmp_path_factory.mktemp("enroll-home") / "home"
    env = {"UNICA_HOME": str(home), "UNICA_PASSPHRASE": "enroll-test-passphrase", "UNICA_DB": None}
    for args in (["init"],
                 ["ca", "create-root", "root", "--subject", "C=CN,O=示例,CN=Enroll Root", "--key-type", "ec-p256"],
                 ["ca", "create-sub", "sub", "--parent", "root", "--subject", "C=CN,O=示例,CN=Enroll Sub",
                  "--key-type", "ec-p256"]):
        p = run_unica(*args, env=env)
        assert p.returncode == 0, p.stderr
    root = run_unica("ca", "export", "root", env=env)
    assert root.returncode == 0, root.stderr
    (home / "root.pem").write_text(root.stdout)
    return env, home


def test_enroll_in_one_step_with_local_ca(unica, local_ca, tmp_path):
    import os

    env, home = local_ca
    token = new_token_label("one")
    init_token_in_process(token)
    p = unica("token", "enroll", "--token", token, "--label", "seal", "--type", "ec-p256",
              "--subject", "CN=示例企业公章,O=示例企业有限公司,C=CN", "--uscc", "91350100M000100Y43",
              "--ca", "sub", "--profile", "enterprise-sign", "--json", env=env)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["chain_written"] >= 1
    blocks = _blocks(_pkcs11_tool_objects(token, os.environ["UNICA_PIN"]))
    kid = res["id"]
    assert {b["head"].split(";")[0] for b in blocks if b.get("ID") == kid} == {
        "Private Key Object", "Public Key Object", "Certificate Object"}
    # the certificate on the token verifies up to the local root, and signs
    doc = tmp_path / "decl.txt"
    doc.write_text("申报")
    p = unica("sign", "cms", str(doc), "--key", f"pkcs11:token={token};object=seal", env=env)
    assert p.returncode == 0, p.stderr
    r = run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", f"{doc}.p7s", "-content", doc,
            "-CAfile", home / "root.pem", "-purpose", "any", "-out", "/dev/null", check=False)
    assert r.returncode == 0, r.stderr
    # re-new through the CA, removing the old certificate
    p = unica("token", "renew", "--key", f"pkcs11:token={token};object=seal", "--ca", "sub",
              "--profile", "enterprise-sign", "--remove-old", env=env)
    assert p.returncode == 0, p.stderr
    assert "removed 1 old" in p.stdout


def test_enroll_refused_by_profile_is_one_line_error(unica, local_ca):
    env, _ = local_ca
    token = new_token_label("bad")
    init_token_in_process(token)
    p = unica("token", "enroll", "--token", token, "--label", "k", "--type", "ec-p256", "--subject", "CN=x,O=y,C=CN",
              "--ca", "sub", "--profile", "enterprise-sign", env=env)
    assert_one_line_error(p, "organizationIdentifier")
