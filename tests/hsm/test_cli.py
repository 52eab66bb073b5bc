"""`unica key` and `unica token list` as an operator runs them, and their one-line errors."""

import json
import uuid

import pytest

from tests.conftest import assert_one_line_error


def test_version_and_help(unica):
    r = unica("--version")
    assert r.returncode == 0 and "unica" in r.stdout
    r = unica("--help")
    assert r.returncode == 0 and "key" in r.stdout and "token" in r.stdout


def test_token_list_shows_test_token(unica, token_label):
    r = unica("token", "list", "--json")
    assert r.returncode == 0, r.stderr
    tokens = json.loads(r.stdout)
    mine = [t for t in tokens if t["label"] == token_label]
    assert len(mine) == 1
    assert "initialized" in mine[0]["flags"] and mine[0]["model"].startswith("SoftHSM")
    r = unica("token", "list")
    assert token_label in r.stdout


def test_key_generate_show_list_json(unica, token_label, tmp_path):
    label = f"cli-{uuid.uuid4().hex[:8]}"
    uri = f"pkcs11:token={token_label};object={label}"
    r = unica("key", "generate", uri, "--type", "ec-p256", "--json")
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    assert made["type"] == "ec-p256" and len(made["spki_sha256"]) == 64
    shown = json.loads(unica("key", "show", uri, "--json").stdout)
    assert shown["spki_sha256"] == made["spki_sha256"]
    listed = json.loads(unica("key", "list", "--token", token_label, "--json").stdout)
    assert made["spki_sha256"] in [k["spki_sha256"] for k in listed]
    # a software key, passphrase from a file
    pw = tmp_path / "pw"
    pw.write_text("file passphrase\n")
    r = unica("key", "generate", f"file:{tmp_path}/sw.pem", "--type", "ed25519", "--passphrase-file", str(pw))
    assert r.returncode == 0, r.stderr
    r = unica("key", "show", f"file:{tmp_path}/sw.pem", env={"UNICA_PASSPHRASE": "file passphrase"})
    assert r.returncode == 0 and "ed25519" in r.stdout


@pytest.mark.parametrize("args, env, needles", [
    (["key", "show", "pkcs11:token=nope-token;object=x"], {}, ["no PKCS#11 token", "nope-token"]),
    (["key", "show", "pkcs11:token=unica-test;object=no-such-key"], {}, ["no private key", "no-such-key"]),
    (["key", "show", "bogus:thing"], {}, ["unknown scheme"]),
    (["key", "show", "pkcs11:token=unica-test?pin-value=1"], {}, ["must not be written"]),
    (["key", "show", "file:/nonexistent/k.pem"], {"UNICA_PASSPHRASE": "x"}, ["does not exist"]),
    (["key", "show", "pkcs11:token=unica-test;object=x"], {"UNICA_PIN": None}, ["PIN is needed", "UNICA_PIN"]),
    (["key", "generate", "pkcs11:token=unica-test;object=x", "--type", "ed25519"], {}, ["cannot be generated"]),
    (["token", "list", "--module", "/nonexistent/p11.so"], {}, ["does not exist"]),
])
def test_errors_are_one_line(unica, args, env, needles):
    assert_one_line_error(unica(*args, env=env), *needles)


def test_wrong_passphrase_and_corrupt_key_file(unica, tmp_path):
    r = unica("key", "generate", f"file:{tmp_path}/k.pem", "--type", "ec-p256", env={"UNICA_PASSPHRASE": "good"})
    assert r.returncode == 0, r.stderr
    assert_one_line_error(unica("key", "show", f"file:{tmp_path}/k.pem", env={"UNICA_PASSPHRASE": "bad"}),
                          "wrong passphrase")
    (tmp_path / "c.pem").write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
    assert_one_line_error(unica("key", "show", f"file:{tmp_path}/c.pem", env={"UNICA_PASSPHRASE": "x"}),
                          "corrupted")
