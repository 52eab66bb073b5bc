"""Software keys: encrypted PKCS#8 files that openssl reads, never written in clear."""

import os
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from unica.errors import CorruptKeyFile, KeyExists, KeyNotFound, PassphraseIncorrect, PinRequired
from unica.hsm import generate_key, key_info, load_key, sign_raw


@pytest.mark.parametrize("kt", ["ec-p256", "ec-p384", "rsa-2048", "ed25519"])
def test_generate_load_sign(tmp_path, kt):
    path = tmp_path / "k.pem"
    key = generate_key(f"file:{path}", kt, passphrase="correct horse")
    assert os.stat(path).st_mode & 0o777 == 0o600
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert b"BEGIN PRIVATE KEY" not in pem
    again = load_key(f"file:{path}", passphrase="correct horse")
    assert key_info(again).spki_sha256 == key_info(key).spki_sha256
    assert key_info(again).key_type == kt
    sig = sign_raw(again, b"declaration")
    # openssl decrypts the file and verifies the signature against the public key
    pub = tmp_path / "pub.pem"
    pub.write_text(key_info(key).public_pem())
    (tmp_path / "msg").write_bytes(b"declaration")
    (tmp_path / "sig").write_bytes(sig)
    dgst = [] if kt == "ed25519" else ["-digest", "sha384" if kt == "ec-p384" else "sha256"]
    if kt == "ed25519":
        cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-rawin",
               "-in", str(tmp_path / "msg"), "-sigfile", str(tmp_path / "sig")]
    else:
        cmd = ["openssl", "dgst", f"-{dgst[1]}", "-verify", str(pub), "-signature", str(tmp_path / "sig"),
               str(tmp_path / "msg")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and "Verified" in r.stdout + r.stderr, r.stdout + r.stderr
    r = subprocess.run(["openssl", "pkey", "-in", str(path), "-passin", "pass:correct horse", "-noout"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_key_file_uses_scrypt(tmp_path):
    path = tmp_path / "k.pem"
    generate_key(f"file:{path}", "ec-p256", passphrase="pw")
    out = subprocess.run(["openssl", "asn1parse", "-in", str(path)], capture_output=True, text=True).stdout
    assert "PBES2" in out and "id-scrypt" in out or "1.3.6.1.4.1.11591.4.11" in out or "scrypt" in out
    assert "aes-256-cbc" in out


def test_never_overwrites(tmp_path):
    path = tmp_path / "k.pem"
    generate_key(f"file:{path}", "ec-p256", passphrase="pw")
    before = path.read_bytes()
    with pytest.raises(KeyExists):
        generate_key(f"file:{path}", "ec-p256", passphrase="pw")
    assert path.read_bytes() == before


def test_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("UNICA_PASSPHRASE", raising=False)
    path = tmp_path / "k.pem"
    generate_key(f"file:{path}", "ec-p256", passphrase="pw")
    with pytest.raises(PassphraseIncorrect):
        load_key(f"file:{path}", passphrase="wrong")
    with pytest.raises(PinRequired):
        load_key(f"file:{path}")
    with pytest.raises(KeyNotFound):
        load_key(f"file:{tmp_path}/missing.pem", passphrase="pw")
    corrupt = tmp_path / "corrupt.pem"
    corrupt.write_bytes(path.read_bytes().replace(b"A", b"B", 40))
    with pytest.raises((CorruptKeyFile, PassphraseIncorrect)):
        load_key(f"file:{corrupt}", passphrase="pw")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
    with pytest.raises(CorruptKeyFile):
        load_key(f"file:{garbage}", passphrase="pw")
    clear = tmp_path / "clear.pem"
    clear.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(CorruptKeyFile, match="not encrypted"):
        load_key(f"file:{clear}", passphrase="pw")


def test_passphrase_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("UNICA_PASSPHRASE", "from-env")
    path = tmp_path / "k.pem"
    generate_key(f"file:{path}", "ec-p256")
    assert load_key(f"file:{path}", passphrase="from-env")
