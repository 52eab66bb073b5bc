"""A second, independent PKCS#11 implementation runs the backup/restore drill (issue #12): a CA key
made and backed up on SoftHSM2 2.6.1 is restored onto NSS softokn's token (``second_module``) and
signs there; a custodian's card on NSS opens its share (ECDH on NSS).

The two modules name RFC 5649 differently (SoftHSM2: CKM_AES_KEY_WRAP_PAD; NSS: CKM_AES_KEY_WRAP_KWP,
its _PAD being RFC 3394 over PKCS#7), and NSS wants CKA_NSS_DB in an EC private-key unwrap
template: ``unica.hsm.wrap`` chooses per module. Everything runs through the ``unica`` binary (NSS
initialises once per process); openssl judges the CRL the restored key signs.
"""

from __future__ import annotations

import json
import subprocess

from cryptography.hazmat.primitives import serialization

from tests.conftest import TEST_PIN, assert_one_line_error
from tests.keybackup.conftest import card_uri, make_cert, p11tool
from tests.keybackup.second_pkcs11 import second_module  # noqa: F401  (the fixture)


def _custodian_args(files) -> list[str]:
    return [a for f in files for a in ("--custodian", str(f))]


def _root_backed_up(c, prefix: str, custodian_files) -> tuple[str, object, object]:
    """A --backup-allowed P-256 root on its own SoftHSM2 token, backed up 2 of N; the token then deleted."""
    hsm = c.new_token(prefix)
    root = f"{prefix}-root-{c.tag}"
    c.ok("ca", "create-root", root, "--subject", f"C=CN,O=口岸联合认证,CN=Second Module Root {prefix} {c.tag}",
         "--key-type", "ec-p256", "--token", hsm, "--backup-allowed", "--crl-url", f"http://crl.example.cn/{root}.crl")
    root_pem = c.dir / f"{root}.pem"
    c.ok("ca", "export", root, "--out", str(root_pem))
    out = c.dir / f"{root}.keybackup"
    c.ok("key", "backup", "--ca", root, *_custodian_args(custodian_files), "--threshold", "2", "--out", str(out))
    doc = json.loads(out.read_text())
    assert doc["wrap"]["algorithm"] == "rfc5649" and doc["wrap"]["mechanism"] == "CKM_AES_KEY_WRAP_PAD"
    subprocess.run(["softhsm2-util", "--delete-token", "--token", hsm], check=True, capture_output=True)
    return root, out, root_pem


def _crl_verifies(c, root: str, root_pem, pin: str) -> None:
    crl = c.dir / f"{root}.crl"
    c.ok("crl", "generate", "--ca", root, "--out", str(crl), env={"UNICA_PIN": pin})
    v = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(crl), "-CAfile", str(root_pem), "-noout"],
                       capture_output=True, text=True)
    assert v.returncode == 0 and "verify OK" in (v.stdout + v.stderr), v.stdout + v.stderr


def test_a_softhsm2_backup_restores_onto_nss_and_signs_there(ceremony, second_module, tmp_path):
    """SoftHSM2's CKM_AES_KEY_WRAP_PAD blob unwraps on NSS (CKM_AES_KEY_WRAP_KWP, CKA_NSS_DB); the CA
    pointed at the key on NSS signs a CRL that openssl verifies with the original CA certificate."""
    c = ceremony
    nss = second_module
    root, out, root_pem = _root_backed_up(c, "kbs", c.cert_files)
    pin_file = tmp_path / "nss-pin"
    pin_file.write_text(nss.pin + "\n")

    # the cards are SoftHSM2's (UNICA_PIN), the target token NSS's (--module, --pin-file)
    p = c.ok("key", "restore", str(out), "--token", nss.token_label, "--module", nss.module_path,
             "--pin-file", str(pin_file), "--share-key", card_uri(c.cards[0]), "--share-key", card_uri(c.cards[2]),
             "--json", env={"UNICA_PIN": TEST_PIN})
    restored = json.loads(p.stdout)
    key_uri = restored["key_uri"]
    assert restored["ca"] == root and f"token={nss.token_label}" in key_uri
    assert f"module-path={nss.module_path}" in key_uri

    # the key is on NSS, sensitive (NSS itself lists it)
    listed = c.ok("key", "list", "--token", nss.token_label, "--module", nss.module_path, "--json",
                  env={"UNICA_PIN": nss.pin})
    assert [k["uri"] for k in json.loads(listed.stdout) if f"ca-{root}" in k["uri"]]
    objs = subprocess.run(["pkcs11-tool", "--module", nss.module_path, "--token-label", nss.token_label, "--login",
                           "--pin", nss.pin, "--list-objects", "--type", "privkey"],
                          capture_output=True, text=True, check=True).stdout
    assert f"ca-{root}" in objs and "sensitive" in objs

    c.ok("ca", "set", root, "--key", key_uri, env={"UNICA_PIN": nss.pin})
    assert json.loads(c.ok("ca", "show", root, "--json").stdout)["key_uri"] == key_uri
    _crl_verifies(c, root, root_pem, nss.pin)

    # the same backup a second time onto NSS: the label is taken, nothing else changes
    p = c.run("key", "restore", str(out), "--token", nss.token_label, "--module", nss.module_path,
              "--pin-file", str(pin_file), "--share-key", card_uri(c.cards[0]), "--share-key", card_uri(c.cards[1]),
              env={"UNICA_PIN": TEST_PIN})
    assert p.returncode != 0
    assert_one_line_error(p, "already has a key labelled")
    events = [e["event"] for e in json.loads(c.ok("audit", "show", "--ca", root, "--json").stdout)]
    assert events.count("key.restore") == 1 and "ca.key_changed" in events
    c.ok("audit", "verify")


def test_a_custodian_card_on_nss_opens_its_share(ceremony, second_module, tmp_path):
    """Custodian A's card is NSS's token (a derive key generated there, ECDH on NSS), custodian B's a
    SoftHSM2 card; the two restore the key onto a fresh SoftHSM2 token, and the CA signs with it."""
    c = ceremony
    nss = second_module
    subprocess.run(["pkcs11-tool", "--module", nss.module_path, "--token-label", nss.token_label, "--login",
                    "--pin", nss.pin, "--keypairgen", "--key-type", "EC:prime256v1", "--usage-derive",
                    "--label", "custodian", "--id", "01"], capture_output=True, text=True, check=True)
    pub_der = tmp_path / "nss-custodian.pub.der"
    subprocess.run(["pkcs11-tool", "--module", nss.module_path, "--token-label", nss.token_label, "--login",
                    "--pin", nss.pin, "--read-object", "--type", "pubkey", "--label", "custodian", "-o",
                    str(pub_der)], capture_output=True, text=True, check=True)
    nss_cert = tmp_path / "nss-custodian.pem"
    nss_cert.write_bytes(make_cert(serialization.load_der_public_key(pub_der.read_bytes()), "Custodian on NSS",
                                   c.issuer_key).public_bytes(serialization.Encoding.PEM))
    root, out, root_pem = _root_backed_up(c, "kbq", [nss_cert, *c.cert_files[:2]])

    pin_file = tmp_path / "nss-pin"
    pin_file.write_text(nss.pin + "\n")
    nss_card = f"pkcs11:token={nss.token_label};object=custodian?module-path={nss.module_path}&pin-source={pin_file}"
    new = c.new_token("kbr")
    p = c.ok("key", "restore", str(out), "--token", new, "--share-key", nss_card, "--share-key", card_uri(c.cards[1]),
             "--json", env={"UNICA_PIN": TEST_PIN})
    restored = json.loads(p.stdout)
    assert restored["ca"] == root and len(restored["custodians_used"]) == 2
    assert "Custodian on NSS" in json.dumps(restored["custodians_used"], ensure_ascii=False)
    c.ok("ca", "set", root, "--key", restored["key_uri"], env={"UNICA_PIN": TEST_PIN})
    _crl_verifies(c, root, root_pem, TEST_PIN)
    assert f"ca-{root}" in p11tool(new, "--list-objects", "--type", "privkey").stdout


def test_a_key_backed_up_on_nss_restores_onto_softhsm2(ceremony, second_module, tmp_path):
    """The other way: the CA's key is generated on NSS (--backup-allowed) and backed up there
    (CKM_AES_KEY_WRAP_KWP, which python-pkcs11 alone cannot call on NSS: its length query answers too
    little), restored onto a SoftHSM2 token (CKM_AES_KEY_WRAP_PAD), and signs there."""
    c = ceremony
    nss = second_module
    on_nss = {"UNICA_PKCS11_MODULE": nss.module_path, "UNICA_PIN": nss.pin}
    root = f"kbnss-root-{c.tag}"
    c.ok("ca", "create-root", root, "--subject", f"C=CN,O=口岸联合认证,CN=NSS Root {c.tag}",
         "--key-type", "ec-p256", "--token", nss.token_label, "--backup-allowed",
         "--crl-url", f"http://crl.example.cn/{root}.crl", env=on_nss)
    root_pem = c.dir / f"{root}.pem"
    c.ok("ca", "export", root, "--out", str(root_pem))
    out = c.dir / f"{root}.keybackup"
    c.ok("key", "backup", "--ca", root, *_custodian_args(c.cert_files), "--threshold", "2", "--out", str(out),
         env=on_nss)
    doc = json.loads(out.read_text())
    assert doc["wrap"]["algorithm"] == "rfc5649" and doc["wrap"]["mechanism"] == "CKM_AES_KEY_WRAP_KWP"

    new = c.new_token("kbu")
    p = c.ok("key", "restore", str(out), "--token", new, "--share-key", card_uri(c.cards[1]),
             "--share-key", card_uri(c.cards[2]), "--json", env={"UNICA_PIN": TEST_PIN})
    restored = json.loads(p.stdout)
    assert "module-path" not in restored["key_uri"]
    c.ok("ca", "set", root, "--key", restored["key_uri"], env={"UNICA_PIN": TEST_PIN})
    _crl_verifies(c, root, root_pem, TEST_PIN)


_UNWRAP_ON_NSS = r"""
import json, sys
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pkcs11 import Mechanism
from unica.errors import UnicaError
from unica.hsm import load_key
from unica.hsm.uri import Pkcs11URI
from unica.hsm.wrap import unwrap_private_key, delete_private_key

a = json.loads(sys.argv[1])
pub = load_pem_private_key(a["key_pem"].encode(), None).public_key()
token = Pkcs11URI(token=a["label"], module_path=a["module"])
mech = getattr(Mechanism, a["mechanism"]) if a["mechanism"] else None
try:
    uri = unwrap_private_key(token, a["pin"], bytes.fromhex(a["kek"]), bytes.fromhex(a["blob"]), pub,
                             label=a["name"], mechanism=mech)
except UnicaError as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
else:
    key = load_key(uri, pin=a["pin"])
    print(json.dumps({"ok": key.public_key() == pub}))
    delete_private_key(uri, a["pin"])
"""


def test_which_mechanism_is_rfc5649_is_said_when_it_is_not(second_module):
    """On NSS, an RFC 5649 blob made in software unwraps with the mechanism unica picks (KWP); forced
    through NSS's CKM_AES_KEY_WRAP_PAD (RFC 3394 + PKCS#7 there) it fails, and the error says that
    mechanism is not RFC 5649 on this module (not "wrong key-encryption key"); a wrong KEK is said as one."""
    import os
    import sys

    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

    nss = second_module
    key = ec.generate_private_key(ec.SECP256R1())
    kek = os.urandom(32)
    blob = aes_key_wrap_with_padding(kek, key.private_bytes(serialization.Encoding.DER,
                                                            serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()

    def unwrap(mechanism, kek_hex, name):
        arg = json.dumps({"key_pem": pem, "label": nss.token_label, "module": nss.module_path, "pin": nss.pin,
                          "kek": kek_hex, "blob": blob.hex(), "mechanism": mechanism, "name": name})
        p = subprocess.run([sys.executable, "-c", _UNWRAP_ON_NSS, arg], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    assert unwrap(None, kek.hex(), "picked") == {"ok": True}
    forced = unwrap("AES_KEY_WRAP_PAD", kek.hex(), "forced")
    assert forced["error"] == "UnsupportedKeyType", forced
    for needle in ("CKM_AES_KEY_WRAP_PAD", "is not RFC 5649", "CKR_WRAPPED_KEY_INVALID"):
        assert needle in forced["message"], forced
    assert "key-encryption key rebuilt" not in forced["message"]
    wrong = unwrap(None, os.urandom(32).hex(), "wrong-kek")
    assert wrong["error"] == "KeyBackupRefused", wrong
    assert "CKM_AES_KEY_WRAP_KWP" in wrong["message"] and "key-encryption key" in wrong["message"], wrong
