"""``unica key backup`` / ``unica key restore`` / ``unica ca set --key`` end to end, as operators run
them: SoftHSM2 tokens as the CA's HSM, as three custodians' cards (2 of 3) and as the fresh
token a key is restored onto; openssl as the independent judge of what the restored key signs
and of the custodians' CMS envelopes."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest
from Crypto.Protocol.SecretSharing import Shamir
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding

from tests.conftest import TEST_PIN, assert_one_line_error
from tests.keybackup.conftest import card_uri, make_cert, p11tool, rsa_cert


def _custodian_args(files) -> list[str]:
    return [a for f in files for a in ("--custodian", str(f))]


@pytest.fixture(scope="module")
def backed_up(ceremony):
    """A root CA with a --backup-allowed P-384 key on its own token, backed up 2 of 3."""
    c = ceremony
    hsm = c.new_token("kbd")
    root = f"kbroot-{c.tag}"
    c.ok("ca", "create-root", root, "--subject", f"C=CN,O=口岸联合认证,CN=Port Root {c.tag}",
         "--key-type", "ec-p384", "--token", hsm, "--backup-allowed", "--crl-url", f"http://crl.example.cn/{root}.crl")
    root_pem = c.dir / f"{root}.pem"
    c.ok("ca", "export", root, "--out", str(root_pem))
    out = c.dir / f"{root}.keybackup"
    c.ok("key", "backup", "--ca", root, *_custodian_args(c.cert_files), "--threshold", "2", "--out", str(out))
    return root, out, root_pem, hsm


def _share_by_openssl(c, envelope: bytes, i: int) -> bytes:
    env_file = c.dir / f"envelope{i}.der"
    env_file.write_bytes(envelope)
    p = subprocess.run(["openssl", "cms", "-decrypt", "-inform", "DER", "-in", str(env_file),
                        "-inkey", str(c.soft_key_pem), "-recip", str(c.cert_files[0])], capture_output=True)
    assert p.returncode == 0, p.stderr
    return p.stdout


def _share_by_card(card: str, envelope: bytes) -> bytes:
    from unica.ca.envelope import open_envelope
    from unica.hsm import load_key

    return open_envelope(envelope, load_key(card_uri(card), pin=TEST_PIN))


def test_ca_show_says_backup_allowed(ceremony, backed_up):
    root = backed_up[0]
    assert json.loads(ceremony.ok("ca", "show", root, "--json").stdout)["backup_allowed"] is True
    lines = [ln for ln in ceremony.ok("ca", "show", root).stdout.splitlines() if ln.startswith("backup allowed:")]
    assert len(lines) == 1 and lines[0].split()[-1] == "yes"


def test_the_file_holds_no_secret_and_openssl_opens_a_custodian_envelope(ceremony, backed_up):
    c = ceremony
    root, out, root_pem, _ = backed_up
    raw = out.read_bytes()
    doc = json.loads(raw)
    assert doc["format"] == "unica-ca-key-backup" and doc["version"] == 1
    assert doc["ca"]["name"] == root and doc["threshold"] == 2 and doc["custodians_total"] == 3
    assert doc["key_type"] == "ec-p384" and doc["wrap"]["mechanism"] == "CKM_AES_KEY_WRAP_PAD"
    ca_cert = x509.load_pem_x509_certificate(root_pem.read_bytes())
    assert x509.load_pem_x509_certificate(doc["ca"]["certificate_pem"].encode()) == ca_cert
    envelopes = [base64.b64decode(x["envelope"]) for x in doc["custodians"]]
    assert {x["subject"] for x in doc["custodians"]} == {
        x509.load_pem_x509_certificate(f.read_bytes()).subject.rfc4514_string() for f in c.cert_files}

    # the independent peer: openssl with custodian 1's PEM key opens the envelope to the same share
    # custodian 1's card gives (ECDH on the card)
    share1 = _share_by_openssl(c, envelopes[0], 1)
    assert share1 == _share_by_card(c.cards[0], envelopes[0])
    share3 = _share_by_card(c.cards[2], envelopes[2])
    assert len(share1) == len(share3) == 53 and share1[:4] == b"UKS1" and share1[4:20] == share3[4:20]

    # rebuild the KEK from two shares, unwrap the key in software: it is the CA certificate's key
    def parts(s):
        return s[20], s[21:37], s[37:53]
    (i1, a1, b1), (i3, a3, b3) = parts(share1), parts(share3)
    kek = Shamir.combine([(i1, a1), (i3, a3)], ssss=False) + Shamir.combine([(i1, b1), (i3, b3)], ssss=False)
    pkcs8 = aes_key_unwrap_with_padding(kek, base64.b64decode(doc["wrap"]["wrapped_key"]))
    key = serialization.load_der_private_key(pkcs8, None)
    assert key.public_key() == ca_cert.public_key()
    scalar = key.private_numbers().private_value.to_bytes(48, "big")

    # none of it is in the file: not in its text, not in any base64 or PEM blob it carries
    blobs = [raw]
    def walk(v):
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str):
            try:
                blobs.append(base64.b64decode(v, validate=True))
            except ValueError:
                pass
            if "-----BEGIN" in v:
                blobs.append(x509.load_pem_x509_certificate(v.encode()).public_bytes(serialization.Encoding.DER))
    walk(doc)
    text = raw.decode()
    for secret in (kek, kek[:16], kek[16:], pkcs8, scalar, share1[21:], share3[21:], a1, b1, a3, b3):
        assert all(secret not in b for b in blobs)
        assert secret.hex() not in text.lower()
        assert base64.b64encode(secret).decode() not in text


def test_backup_restore_on_a_fresh_token_after_the_hsm_is_destroyed(ceremony):
    """The drill: a backup-allowed root, backed up 2 of 3; its token destroyed; restored from
    custodians 1 and 3 onto a new token; the CA pointed at it signs a CRL and a subordinate CA
    that openssl verifies with the original CA certificate."""
    c = ceremony
    hsm = c.new_token("kbe")
    root = f"kbdrill-{c.tag}"
    c.ok("ca", "create-root", root, "--subject", f"C=CN,O=口岸联合认证,CN=Drill Root {c.tag}",
         "--key-type", "ec-p384", "--token", hsm, "--backup-allowed", "--crl-url", f"http://crl.example.cn/{root}.crl")
    root_pem = c.dir / f"{root}.pem"
    c.ok("ca", "export", root, "--out", str(root_pem))
    out = c.dir / f"{root}.keybackup"
    p = c.ok("key", "backup", "--ca", root, *_custodian_args(c.cert_files), "--threshold", "2", "--out", str(out),
             "--json")
    summary = json.loads(p.stdout)
    assert summary["threshold"] == 2 and summary["custodians_total"] == 3 and summary["ca"] == root
    subprocess.run(["softhsm2-util", "--delete-token", "--token", hsm], check=True, capture_output=True)
    crl = c.dir / f"{root}-gone.crl"
    assert c.run("crl", "generate", "--ca", root, "--out", str(crl)).returncode != 0  # the key is gone

    new = c.new_token("kbn")
    p = c.ok("key", "restore", str(out), "--token", new, "--share-key", card_uri(c.cards[0]),
             "--share-key", card_uri(c.cards[2]), "--json")
    restored = json.loads(p.stdout)
    assert restored["ca"] == root and restored["backup_id"] == summary["backup_id"]
    assert f"token={new}" in restored["key_uri"] and len(restored["custodians_used"]) == 2
    # the restored key is sensitive on the token (pkcs11-tool says so), the public key is the CA's
    objs = p11tool(new, "--list-objects", "--type", "privkey").stdout
    assert f"ca-{root}" in objs and "sensitive" in objs

    c.ok("ca", "set", root, "--key", restored["key_uri"])
    assert json.loads(c.ok("ca", "show", root, "--json").stdout)["key_uri"] == restored["key_uri"]

    crl = c.dir / f"{root}.crl"
    c.ok("crl", "generate", "--ca", root, "--out", str(crl))
    v = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(crl), "-CAfile", str(root_pem), "-noout"],
                       capture_output=True, text=True)
    assert v.returncode == 0 and "verify OK" in (v.stdout + v.stderr), v.stdout + v.stderr
    sub = f"kbdsub-{c.tag}"
    c.ok("ca", "create-sub", sub, "--parent", root, "--subject", f"C=CN,O=口岸联合认证,CN=Drill Sub {c.tag}",
         "--key-type", "ec-p256", "--token", new)
    sub_pem = c.dir / f"{sub}.pem"
    c.ok("ca", "export", sub, "--out", str(sub_pem))
    v = subprocess.run(["openssl", "verify", "-CAfile", str(root_pem), str(sub_pem)], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr

    events = json.loads(c.ok("audit", "show", "--ca", root, "--json").stdout)
    names = [e["event"] for e in events]
    assert {"key.backup", "key.restore", "ca.key_changed"} <= set(names)
    c.ok("audit", "verify")


def test_fewer_than_m_shares_says_how_many_are_missing(ceremony, backed_up):
    c = ceremony
    new = c.new_token("kbm")
    # said before any card or token is asked for a PIN (none is available here)
    p = c.run("key", "restore", str(backed_up[1]), "--token", new, "--share-key", card_uri(c.cards[1]),
              env={"UNICA_PIN": None})
    assert p.returncode == 3
    assert_one_line_error(p, "1 given", "1 missing")
    # the same card named twice is one share
    p = c.run("key", "restore", str(backed_up[1]), "--token", new, "--share-key", card_uri(c.cards[1]),
              "--share-key", card_uri(c.cards[1]) + ";id=%01")
    assert p.returncode == 3
    assert_one_line_error(p, "again")
    assert "ca-" not in p11tool(new, "--list-objects", "--type", "privkey").stdout


def test_a_card_that_is_no_custodian_is_refused(ceremony, backed_up):
    c = ceremony
    stranger, _ = c.new_card("kbw")
    new = c.new_token("kbt")
    p = c.run("key", "restore", str(backed_up[1]), "--token", new, "--share-key", card_uri(c.cards[0]),
              "--share-key", card_uri(stranger))
    assert p.returncode == 3
    assert_one_line_error(p, "wrong card", stranger)
    assert "ca-" not in p11tool(new, "--list-objects", "--type", "privkey").stdout


def test_a_key_without_backup_allowed_is_refused(ceremony):
    c = ceremony
    name = f"kbnobackup-{c.tag}"
    c.ok("ca", "create-root", name, "--subject", f"C=CN,O=口岸联合认证,CN=No Backup {c.tag}",
         "--key-type", "ec-p256", "--token", c.hsm)
    assert json.loads(c.ok("ca", "show", name, "--json").stdout)["backup_allowed"] is False
    out = c.dir / "nobackup.keybackup"
    p = c.run("key", "backup", "--ca", name, *_custodian_args(c.cert_files), "--threshold", "2", "--out", str(out))
    assert p.returncode == 3
    assert_one_line_error(p, "CKR_KEY_UNEXTRACTABLE", "--backup-allowed")
    assert not out.exists()
    events = json.loads(c.ok("audit", "show", "--ca", name, "--json").stdout)
    assert "key.backup" not in [e["event"] for e in events]


def test_backup_allowed_needs_a_token_key(ceremony):
    p = ceremony.run("ca", "create-root", f"kbfile-{ceremony.tag}", "--subject", "CN=File Key", "--key-type",
                     "ec-p256", "--backup-allowed", env={"UNICA_PASSPHRASE": "kb-pass-1"})
    assert p.returncode == 2
    assert_one_line_error(p, "--backup-allowed", "--token")


def test_unfit_custodians_and_thresholds_are_refused(ceremony, backed_up):
    c = ceremony
    root = backed_up[0]
    out = c.dir / "refused.keybackup"
    sig_only = c.dir / "sig-only.pem"
    sig_only.write_bytes(make_cert(ec.generate_private_key(ec.SECP256R1()).public_key(), "Signer", c.issuer_key,
                                   key_agreement=False).public_bytes(serialization.Encoding.PEM))
    rsa_file = c.dir / "rsa-custodian.pem"
    rsa_file.write_bytes(rsa_cert(c.issuer_key).public_bytes(serialization.Encoding.PEM))
    p521 = c.dir / "p521.pem"
    p521.write_bytes(make_cert(ec.generate_private_key(ec.SECP521R1()).public_key(), "P521", c.issuer_key)
                     .public_bytes(serialization.Encoding.PEM))
    cases = [
        ([*c.cert_files[:2], sig_only], "2", 3, ["keyAgreement"]),
        ([*c.cert_files[:2], rsa_file], "2", 3, ["EC P-256 or P-384"]),
        ([*c.cert_files[:2], p521], "2", 3, ["EC P-256 or P-384"]),
        ([c.cert_files[0], c.cert_files[0], c.cert_files[1]], "2", 3, ["twice"]),
        (c.cert_files, "4", 2, ["--threshold 4"]),
        (c.cert_files, "1", 2, ["--threshold 1"]),
    ]
    for files, m, code, needles in cases:
        # said before the CA token is asked for its PIN (none is available here)
        p = c.run("key", "backup", "--ca", root, *_custodian_args(files), "--threshold", m, "--out", str(out),
                  env={"UNICA_PIN": None})
        assert p.returncode == code, (needles, p.stderr)
        assert_one_line_error(p, *needles)
        assert not out.exists()
    garbage = c.dir / "garbage.pem"
    garbage.write_text("not a certificate")
    p = c.run("key", "backup", "--ca", root, *_custodian_args([*c.cert_files[:2], garbage]), "--threshold", "2",
              "--out", str(out))
    assert p.returncode == 2
    assert_one_line_error(p, "garbage.pem")


def test_malformed_backup_file_and_ca_set_with_the_wrong_key(ceremony, backed_up):
    c = ceremony
    bad = c.dir / "bad.keybackup"
    bad.write_text('{"format": "something-else"}')
    p = c.run("key", "restore", str(bad), "--token", c.hsm, "--share-key", card_uri(c.cards[0]),
              "--share-key", card_uri(c.cards[1]))
    assert p.returncode == 2
    assert_one_line_error(p, "not a unica CA key backup file")
    # a key that is not the CA's: refused, the CA keeps its key
    root = backed_up[0]
    before = json.loads(c.ok("ca", "show", root, "--json").stdout)["key_uri"]
    other = f"pkcs11:token={c.hsm};object=kb-other-{c.tag}"
    c.ok("key", "generate", other, "--key-type", "ec-p384")
    p = c.run("ca", "set", root, "--key", other)
    assert p.returncode == 3
    assert_one_line_error(p, "is not CA", "does not match the CA certificate")
    assert json.loads(c.ok("ca", "show", root, "--json").stdout)["key_uri"] == before
