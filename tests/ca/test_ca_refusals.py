"""Bad input: each a one-line error from the CLI, and no new certificate row."""

from __future__ import annotations

import subprocess

import pytest

from tests.ca.conftest import openssl_csr
from tests.conftest import assert_one_line_error

GOOD_SIGN_SUBJ = "/C=CN/O=测试科技有限公司/organizationIdentifier=91350100M000100Y43/CN=张三"


def _soft(pki):
    return next(n for n in pki.subs if n.startswith("sub-soft"))


def _refused(pki, args, *needles, env=None):
    before = pki.cert_rows()
    p = pki.run(*args, env=env)
    assert_one_line_error(p, *needles)
    assert pki.cert_rows() == before, "a refused request left a certificate row"
    return p


def test_garbage_csr(pki, tmp_path):
    bad = tmp_path / "garbage.csr"
    bad.write_bytes(b"-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3Ny\n-----END CERTIFICATE REQUEST-----\n")
    _refused(pki, ["issue", "--ca", _soft(pki), "--profile", "tls-server", "--csr", str(bad)],
             "not a PKCS#10 certificate request")
    bad.write_bytes(b"\x00\x01garbage")
    _refused(pki, ["issue", "--ca", _soft(pki), "--profile", "tls-server", "--csr", str(bad)], "not a PKCS#10")


def test_csr_with_broken_signature(pki, tmp_path):
    csr = openssl_csr(tmp_path, "/CN=broken.example.cn", san="DNS:broken.example.cn")
    der = subprocess.run(["openssl", "req", "-in", str(csr), "-outform", "DER"], capture_output=True,
                         check=True).stdout
    broken = bytearray(der)
    broken[-5] ^= 0x01  # inside the signature value
    bad = tmp_path / "broken.der"
    bad.write_bytes(bytes(broken))
    _refused(pki, ["issue", "--ca", _soft(pki), "--profile", "tls-server", "--csr", str(bad)],
             "signature does not verify")


def test_forbidden_key_type_and_size(pki, tmp_path):
    small = openssl_csr(tmp_path, "/CN=small.example.cn", key="rsa:1024", san="DNS:small.example.cn")
    _refused(pki, ["issue", "--ca", _soft(pki), "--profile", "tls-server", "--csr", str(small)],
             "key type rsa-1024 is not allowed", "tls-server")
    p521 = openssl_csr(tmp_path, "/CN=p521.example.cn", key="ec:P-521", san="DNS:p521.example.cn")
    _refused(pki, ["issue", "--ca", _soft(pki), "--profile", "tls-server", "--csr", str(p521)],
             "key type ec-p521 is not allowed")


def test_unsupported_key_type_is_named(pki, tmp_path):
    """A request for a key type unica cannot take is refused naming the type (X25519 cannot sign,
    so its CSR is hand-assembled)."""
    key, csr = tmp_path / "k.pem", tmp_path / "r.csr"
    subprocess.run(["openssl", "genpkey", "-algorithm", "X25519", "-out", str(key)], check=True, capture_output=True)
    csr.write_bytes(_csr_with_spki(tmp_path, key))
    _refused(pki, ["issue", "--ca", _soft(pki), "--profile", "tls-server", "--csr", str(csr)],
             "public key type is not supported", "X25519 (1.3.101.110)")


def test_sm2_request_under_a_profile_without_sm2(pki, tmp_path):
    """An SM2 CSR (made the way the national-algorithm tools make it) is read, and refused by a
    profile that does not allow SM2 keys, naming the type."""
    key, csr = tmp_path / "k.pem", tmp_path / "r.csr"
    subprocess.run(["openssl", "genpkey", "-algorithm", "SM2", "-out", str(key)], check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-new", "-key", str(key), "-sm3", "-sigopt", "distid:1234567812345678",
                    "-subj", "/CN=sm2.example.cn", "-out", str(csr)], check=True, capture_output=True)
    _refused(pki, ["issue", "--ca", _soft(pki), "--profile", "tls-server", "--csr", str(csr)],
             "key type sm2 is not allowed", "tls-server")


def _csr_with_spki(tmp_path, key_file):
    """A PKCS#10 request carrying the public key of ``key_file`` (signed by an unrelated P-256 key:
    the key type is refused before the signature is looked at)."""
    from asn1crypto import csr as acsr, keys, x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pub = subprocess.run(["openssl", "pkey", "-in", str(key_file), "-pubout", "-outform", "DER"], check=True,
                         capture_output=True).stdout
    info = acsr.CertificationRequestInfo({"version": "v1", "subject": x509.Name.build({"common_name": "x25519.example.cn"}),
                                          "subject_pk_info": keys.PublicKeyInfo.load(pub), "attributes": []})
    signer = ec.generate_private_key(ec.SECP256R1())
    sig = signer.sign(info.dump(), ec.ECDSA(hashes.SHA256()))
    req = acsr.CertificationRequest({"certification_request_info": info,
                                     "signature_algorithm": {"algorithm": "sha256_ecdsa"}, "signature": sig})
    return req.dump()


def test_missing_required_subject_attribute(pki, tmp_path):
    csr = openssl_csr(tmp_path, "/C=CN/organizationIdentifier=91350100M000100Y43/CN=张三")
    _refused(pki, ["issue", "--ca", _soft(pki), "--profile", "enterprise-sign", "--csr", str(csr)],
             "lacks organizationName", "enterprise-sign")


def test_wrong_uscc_check_character(pki, tmp_path):
    csr = openssl_csr(tmp_path, "/C=CN/O=测试科技有限公司/organizationIdentifier=91350100M000100Y44/CN=张三")
    _refused(pki, ["issue", "--ca", _soft(pki), "--profile", "enterprise-sign", "--csr", str(csr)],
             "Unified Social Credit Code", "wrong check character", "'3'")


def test_subject_attribute_not_allowed_and_san_type(pki, tmp_path):
    csr = openssl_csr(tmp_path, "/C=CN/O=T/CN=x/title=boss")
    _refused(pki, ["issue", "--ca", _soft(pki), "--profile", "timestamping", "--csr", str(csr)],
             "subject attribute title is not allowed")
    csr = openssl_csr(tmp_path, GOOD_SIGN_SUBJ, san="DNS:www.example.cn")
    _refused(pki, ["issue", "--ca", _soft(pki), "--profile", "enterprise-sign", "--csr", str(csr)],
             "type dns", "not allowed")


def test_unknown_profile(pki, tmp_path):
    csr = openssl_csr(tmp_path, "/CN=u.example.cn", san="DNS:u.example.cn")
    _refused(pki, ["issue", "--ca", _soft(pki), "--profile", "no-such-profile", "--csr", str(csr)],
             "unknown profile 'no-such-profile'")


def test_unknown_ca(pki, tmp_path):
    csr = openssl_csr(tmp_path, "/CN=u.example.cn", san="DNS:u.example.cn")
    _refused(pki, ["issue", "--ca", "no-such-ca", "--profile", "tls-server", "--csr", str(csr)],
             "no CA named 'no-such-ca'")


def test_profile_file_with_unknown_key(pki, tmp_path):
    profiles = pki.home / "profiles"
    bad = profiles / "bad-extra-key.toml"
    bad.write_text('kind = "end-entity"\nvalidity = "1y"\ncolour = "blue"\n[key_usage]\nusages = ["digitalSignature"]\n'
                   '[keys]\nallowed = ["ec-p256"]\n[subject]\nrequired = ["commonName"]\n')
    try:
        csr = openssl_csr(tmp_path, "/CN=x")
        _refused(pki, ["issue", "--ca", _soft(pki), "--profile", "bad-extra-key", "--csr", str(csr)],
                 str(bad), "colour", "unknown key")
        assert_one_line_error(pki.run("profile", "check", str(bad)), "colour", "unknown key")
        assert_one_line_error(pki.run("profile", "list"), "colour")
    finally:
        bad.unlink()


def test_expired_ca(pki, tmp_path):
    name = "expired-" + tmp_path.name[-6:].replace("_", "")
    pki.ok("ca", "create-sub", name, "--parent", pki.root, "--subject", "C=CN,O=统一测试,CN=Short Lived",
           "--key-type", "ec-p256", "--validity", "1s")
    csr = openssl_csr(tmp_path, "/CN=late.example.cn", san="DNS:late.example.cn")
    _refused(pki, ["issue", "--ca", name, "--profile", "tls-server", "--csr", str(csr)], "expired", name)


def test_lint_finding_refuses_issuance(pki, tmp_path):
    """An operator profile the loader accepts, but whose result pkilint flags: refused with the finding."""
    prof = pki.home / "profiles" / "email-in-dn.toml"
    prof.write_text('kind = "end-entity"\nvalidity = "1y"\n[key_usage]\nusages = ["digitalSignature"]\n'
                    '[keys]\nallowed = ["ec-p256"]\n[subject]\nrequired = ["commonName"]\nallowed = ["emailAddress"]\n')
    try:
        csr = openssl_csr(tmp_path, "/CN=Someone/emailAddress=someone@example.cn")
        _refused(pki, ["issue", "--ca", _soft(pki), "--profile", "email-in-dn", "--csr", str(csr)],
                 "pkilint refuses", "pkix.subject_email_address_not_in_san")
    finally:
        prof.unlink()


def test_refusals_are_audited(pki, tmp_path):
    from tests.ca.conftest import count_rows

    before = count_rows(pki.db_url(), "audit_log", "WHERE event = 'certificate.refused'")
    csr = openssl_csr(tmp_path, "/C=CN/O=X/organizationIdentifier=91350100M000100Y44/CN=x")
    pki.run("issue", "--ca", _soft(pki), "--profile", "enterprise-sign", "--csr", str(csr))
    assert count_rows(pki.db_url(), "audit_log", "WHERE event = 'certificate.refused'") == before + 1


@pytest.mark.parametrize("args,needles", [
    (["ca", "create-root", "r2", "--subject", "CN=x"], ["--key URI or --key-type"]),
    (["ca", "show", "nope"], ["no CA named"]),
    (["cert", "show", "zz"], ["bad serial"]),
    (["cert", "show", "abcdef"], ["no certificate with serial abcdef"]),
    (["cert", "list", "--expiring", "soon"], ["bad duration"]),
    (["profile", "show", "nope"], ["unknown profile"]),
])
def test_cli_errors_are_one_line(pki, args, needles):
    assert_one_line_error(pki.run(*args), *needles)


def test_ca_profile_set_and_no_key_made_for_a_refused_ca(pki, tmp_path):
    name = "only-tls-" + tmp_path.name[-6:].replace("_", "")
    pki.ok("ca", "create-sub", name, "--parent", pki.root, "--subject", "C=CN,O=统一测试,CN=Only TLS",
           "--key-type", "ec-p256", "--profiles", "tls-server")
    csr = openssl_csr(tmp_path, "/C=CN/O=T/CN=TSA")
    _refused(pki, ["issue", "--ca", name, "--profile", "timestamping", "--csr", str(csr)],
             "does not issue under profile 'timestamping'")
    keys_before = sorted((pki.home / "keys").iterdir())
    before = pki.cert_rows()
    assert_one_line_error(pki.run("ca", "create-root", "nokey", "--subject", "CN=No Country", "--key-type", "ec-p256"),
                          "lacks countryName")
    assert_one_line_error(pki.run("ca", "create-sub", "nokey", "--parent", pki.root, "--subject", "C=CN,O=X,CN=Y",
                                  "--key-type", "ec-p256", "--crl-url", "http://c.example.cn/{shard}.crl"),
                          "--crl-shards is 1")
    assert sorted((pki.home / "keys").iterdir()) == keys_before and pki.cert_rows() == before


def test_issue_batch_cli(pki, tmp_path):
    import json as _json

    good = [openssl_csr(tmp_path, f"/CN=b{i}.example.cn", san=f"DNS:b{i}.example.cn", name=f"b{i}") for i in range(3)]
    bad = openssl_csr(tmp_path, "/CN=weak.example.cn", key="rsa:1024", san="DNS:weak.example.cn", name="weak")
    before = pki.cert_rows()
    (tmp_path / "out").mkdir()  # unica creates no directories
    p = pki.run("issue-batch", "--ca", _soft(pki), "--profile", "tls-server", "--out-dir", str(tmp_path / "out"),
                "--no-lint", "--json", *map(str, good), str(bad))
    assert_one_line_error(p, "1 of 4 requests refused")
    report = _json.loads(p.stdout)
    assert [("serial" in r) for r in report] == [True, True, True, False]
    assert "rsa-1024" in report[3]["refused"]
    assert pki.cert_rows() == before + 3
    assert sorted(x.name for x in (tmp_path / "out").iterdir()) == ["b0.pem", "b1.pem", "b2.pem"]


def test_issue_batch_in_chunks_shows_progress(pki, tmp_path):
    import json as _json

    csrs = [openssl_csr(tmp_path, f"/CN=c{i}.example.cn", san=f"DNS:c{i}.example.cn", name=f"c{i}") for i in range(5)]
    def batches() -> int:
        return [e["event"] for e in _json.loads(pki.run("audit", "show", "--json").stdout)].count(
            "certificate.issued_batch")

    before, batches_before = pki.cert_rows(), batches()
    (tmp_path / "out").mkdir()
    p = pki.run("issue-batch", "--ca", _soft(pki), "--profile", "tls-server", "--out-dir", str(tmp_path / "out"),
                "--batch-size", "2", "--json", *map(str, csrs), env={"UNICA_PROGRESS": "always"})
    assert p.returncode == 0, p.stderr
    assert [r["csr"] for r in _json.loads(p.stdout)] == list(map(str, csrs))
    assert "5/5 requests done" in p.stderr and "2/5 requests done" in p.stderr  # progress lines, even a short run
    assert pki.cert_rows() == before + 5
    assert batches() == batches_before + 3  # 2 + 2 + 1
