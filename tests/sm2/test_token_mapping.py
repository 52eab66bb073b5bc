"""SM2 on PKCS#11 through a module-specific mechanism mapping (unica.hsm.sm2map).

SoftHSM2 has no SM2, so no test here signs SM2 on a token. What runs:

- ``e = SM3(Z || M)`` (what a module's SM2 mechanism is given) equals the pure-Python gmssl's;
- the ``[[pkcs11.sm2]]`` entries of config.toml are read strictly;
- without a mapping, and with a mapping to codes the module does not have, ``key generate
  --key-type sm2`` on a token is refused with one line naming the mapping;
- a stand-in mapping onto SoftHSM2's EC key type and ``CKM_EC_KEY_PAIR_GEN`` / ``CKM_ECDSA``:
  the key is made on the SM2 curve (OpenSC's pkcs11-tool sees it), read back as an SM2 key, and
  then -- the mechanism being ECDSA, not SM2 -- refused at its first signature, before a CA is
  recorded: a wrong mapping cannot sign anything.
"""

from __future__ import annotations

import secrets
import subprocess

import pytest

from tests.conftest import SOFTHSM_MODULE, assert_one_line_error, run_unica
from tests.sm2 import peers
from tests.token.pki import init_token_in_process, new_token_label

CKK_EC, CKM_EC_KEY_PAIR_GEN, CKM_ECDSA = 0x3, 0x1040, 0x1041

STAND_IN = f"""
[[pkcs11.sm2]]
module = "{SOFTHSM_MODULE}"
key_type = {CKK_EC:#x}
keygen = {CKM_EC_KEY_PAIR_GEN:#x}
sign = {CKM_ECDSA:#x}
"""


@pytest.mark.parametrize("signer_id", [b"1234567812345678", b"", b"ALICE123@YAHOO.COM", bytes(range(200))])
def test_the_digest_a_module_signs_is_gmssls(signer_id):
    from unica.sm2 import SM2PrivateKey, digest

    for _ in range(4):
        key = SM2PrivateKey.generate()
        data = secrets.token_bytes(secrets.randbelow(300))
        xy = key.public_key().spki_der()[-64:]
        want = peers.gm_sm3_hash(peers.z_value(xy, signer_id) + data)
        assert digest(key.public_key(), data, signer_id=signer_id) == want
    assert digest(key.public_key(), b"m") == peers.gm_sm3_hash(peers.z_value(xy, b"1234567812345678") + b"m")


def _home(tmp_path, extra: str = "") -> dict:
    env = {"UNICA_HOME": str(tmp_path / "home"), "UNICA_DB": None, "UNICA_PASSPHRASE": None}
    p = run_unica("init", env=env)
    assert p.returncode == 0, p.stderr
    if extra:
        with open(tmp_path / "home" / "config.toml", "a", encoding="utf-8") as f:
            f.write(extra)
    return env


def test_the_mapping_is_read_from_config_toml(tmp_path, monkeypatch):
    from unica.config import load_config

    env = _home(tmp_path, STAND_IN)
    monkeypatch.setenv("UNICA_HOME", env["UNICA_HOME"])
    (m,) = load_config().pkcs11_sm2
    assert (m.module, m.key_type, m.keygen, m.sign) == (SOFTHSM_MODULE, CKK_EC, CKM_EC_KEY_PAIR_GEN, CKM_ECDSA)


@pytest.mark.parametrize("bad, needle", [
    ('[pkcs11]\nsm2 = 5\n', "array of tables"),
    ('[pkcs11]\nrsa = []\n', "only [[pkcs11.sm2]]"),
    ('[[pkcs11.sm2]]\nmodule = "/m.so"\nkey_type = 1\nkeygen = 2\n', "sign is missing"),
    ('[[pkcs11.sm2]]\nmodule = "/m.so"\nkey_type = 1\nkeygen = 2\nsign = "0x3"\n', "unsigned integer"),
    ('[[pkcs11.sm2]]\nmodule = "/m.so"\nkey_type = -1\nkeygen = 2\nsign = 3\n', "unsigned integer"),
    ('[[pkcs11.sm2]]\nmodule = "/m.so"\nkey_type = 1\nkeygen = 2\nsign = 3\nverify = 4\n', "unknown key 'verify'"),
    ('[[pkcs11.sm2]]\nkey_type = 1\nkeygen = 2\nsign = 3\n', "module must be"),
    ('[[pkcs11.sm2]]\nmodule = "/m.so"\nkey_type = 1\nkeygen = 2\nsign = 3\n'
     '[[pkcs11.sm2]]\nmodule = "/m.so"\nkey_type = 1\nkeygen = 2\nsign = 3\n', "a second mapping"),
])
def test_a_bad_mapping_is_refused_in_one_line(tmp_path, bad, needle):
    env = _home(tmp_path, "\n" + bad)
    p = run_unica("ca", "list", env=env)
    assert p.returncode == 2, p.stderr
    assert_one_line_error(p, "config.toml", needle)


@pytest.fixture
def token():
    label = new_token_label("sm2map")
    init_token_in_process(label)
    return label


def test_without_a_mapping_a_token_refuses_sm2_and_says_how(tmp_path, token):
    env = _home(tmp_path)
    p = run_unica("key", "generate", f"pkcs11:token={token};object=k", "--key-type", "sm2", env=env)
    assert p.returncode == 1
    assert_one_line_error(p, "SM2", "[[pkcs11.sm2]]", "config.toml", "file:")


def test_a_mapping_to_codes_the_module_lacks_is_named(tmp_path, token):
    env = _home(tmp_path, STAND_IN.replace(f"keygen = {CKM_EC_KEY_PAIR_GEN:#x}", "keygen = 0x80000201"))
    p = run_unica("key", "generate", f"pkcs11:token={token};object=k", "--key-type", "sm2", env=env)
    assert p.returncode == 1
    assert_one_line_error(p, "cannot generate sm2", "0x80000201", "[[pkcs11.sm2]]")


def test_a_stand_in_mapping_makes_the_key_but_cannot_sign_anything(tmp_path, token):
    env = _home(tmp_path, STAND_IN)
    uri = f"pkcs11:token={token};object=gm"
    p = run_unica("key", "generate", uri, "--key-type", "sm2", "--json", env=env)
    assert p.returncode == 0, p.stderr
    import json

    made = json.loads(p.stdout)
    assert made["type"] == "sm2", made
    # the SPKI is an SM2 one (id-ecPublicKey, curve 1.2.156.10197.1.301) and reads as such in OpenSSL
    pem = tmp_path / "gm.pub.pem"
    pem.write_text(made["public_key_pem"])
    text = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(pem), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "SM2" in text, text
    # an independent PKCS#11 client sees the key pair on the token, on the SM2 curve
    objs = subprocess.run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", token, "--login",
                           "--pin", "env:UNICA_PIN", "--list-objects"], capture_output=True, text=True)
    if "env:UNICA_PIN" in objs.stderr:  # older OpenSC: no env: PIN source
        import os

        objs = subprocess.run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", token, "--login",
                               "--pin", os.environ["UNICA_PIN"], "--list-objects"], capture_output=True, text=True)
    assert objs.returncode == 0, objs.stderr
    assert "label:      gm" in objs.stdout and "EC" in objs.stdout, objs.stdout
    p = run_unica("key", "list", "--token", token, env=env)
    assert p.returncode == 0 and "sm2" in p.stdout, p.stdout + p.stderr
    # the first signature is checked: ECDSA is not SM2, so the CA is refused before it is recorded
    p = run_unica("ca", "create-root", "gmtok", "--subject", "C=CN,O=Test,CN=Token SM2 Root", "--key", uri, env=env)
    assert p.returncode == 1
    assert_one_line_error(p, "does not verify as SM2", f"{CKM_ECDSA:#x}", "[[pkcs11.sm2]]")
    p = run_unica("ca", "list", "--json", env=env)
    assert p.returncode == 0 and json.loads(p.stdout) == [], p.stdout
