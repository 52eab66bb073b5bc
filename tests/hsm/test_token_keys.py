"""Keys on a real SoftHSM2 token: seen by OpenSC, verified by openssl, safe from many threads."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import subprocess
import threading
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID

from unica.errors import KeyExists, KeyNotFound, TokenNotFound, UnsupportedKeyType
from unica.hsm import generate_key, key_info, list_keys, load_key, sign_raw
from unica.hsm.keytypes import key_identifier

MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def _label(prefix="k"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def pkcs11_tool_objects(token: str) -> str:
    r = subprocess.run(["pkcs11-tool", "--module", MODULE, "--token-label", token, "--login",
                        "--pin", os.environ["UNICA_PIN"], "-O"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _blocks(listing: str, label: str) -> list[str]:
    blocks, cur = [], []
    for line in listing.splitlines():
        if line and not line.startswith(" ") and cur:
            blocks.append("\n".join(cur))
            cur = []
        cur.append(line)
    if cur:
        blocks.append("\n".join(cur))
    return [b for b in blocks if f"label:      {label}" in b]


@pytest.mark.parametrize("kt", ["ec-p256", "ec-p384", "rsa-2048"])
def test_generated_key_is_seen_by_opensc_as_sensitive_and_unextractable(token_label, kt, tmp_path):
    label = _label(kt)
    key = generate_key(f"pkcs11:token={token_label};object={label}", kt)
    kid = key_identifier(key.public_key())
    assert key.uri.id == kid
    blocks = _blocks(pkcs11_tool_objects(token_label), label)
    priv = [b for b in blocks if b.startswith("Private Key Object")]
    pub = [b for b in blocks if b.startswith("Public Key Object")]
    assert len(priv) == 1 and len(pub) == 1, blocks
    assert f"ID:         {kid.hex()}" in priv[0] and f"ID:         {kid.hex()}" in pub[0]
    assert "sensitive" in priv[0] and "never extractable" in priv[0]
    assert "Usage:      sign" in priv[0]


@pytest.mark.parametrize("kt", ["ec-p256", "ec-p384", "rsa-2048"])
def test_signature_verifies_with_openssl_against_key_show(unica, token_label, kt, tmp_path):
    label = _label(kt)
    uri = f"pkcs11:token={token_label};object={label}"
    r = unica("key", "generate", uri, "--type", kt)
    assert r.returncode == 0, r.stderr
    r = unica("key", "show", uri)
    assert r.returncode == 0, r.stderr
    pem = r.stdout[r.stdout.index("-----BEGIN PUBLIC KEY-----"):]
    (tmp_path / "pub.pem").write_text(pem)
    key = load_key(uri)
    msg = b"customs declaration 2026-0001"
    (tmp_path / "msg").write_bytes(msg)
    (tmp_path / "sig").write_bytes(sign_raw(key, msg))
    digest = "sha384" if kt == "ec-p384" else "sha256"
    out = subprocess.run(["openssl", "dgst", f"-{digest}", "-verify", str(tmp_path / "pub.pem"),
                          "-signature", str(tmp_path / "sig"), str(tmp_path / "msg")],
                         capture_output=True, text=True)
    assert "Verified OK" in out.stdout, out.stdout + out.stderr
    # and the same check fails on other content
    (tmp_path / "msg").write_bytes(msg + b"!")
    out = subprocess.run(["openssl", "dgst", f"-{digest}", "-verify", str(tmp_path / "pub.pem"),
                          "-signature", str(tmp_path / "sig"), str(tmp_path / "msg")],
                         capture_output=True, text=True)
    assert "Verified OK" not in out.stdout


def test_rsa_pss_and_prehashed(token_label):
    key = generate_key(f"pkcs11:token={token_label};object={_label('pss')}", "rsa-2048")
    pub = key.public_key()
    for h in (hashes.SHA256(), hashes.SHA384()):
        pss = padding.PSS(padding.MGF1(h), padding.PSS.DIGEST_LENGTH)
        pub.verify(key.sign(b"data", pss, h), b"data", pss, h)
        pub.verify(key.sign(b"data", padding.PKCS1v15(), h), b"data", padding.PKCS1v15(), h)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"data")
    d = digest.finalize()
    pub.verify(key.sign(d, padding.PKCS1v15(), Prehashed(hashes.SHA256())), b"data", padding.PKCS1v15(),
               hashes.SHA256())
    eck = generate_key(f"pkcs11:token={token_label};object={_label('ph')}", "ec-p256")
    eck.public_key().verify(eck.sign(d, ec.ECDSA(Prehashed(hashes.SHA256()))), b"data", ec.ECDSA(hashes.SHA256()))


def test_token_key_in_certificate_builder_verifies_with_openssl(token_label, tmp_path):
    key = generate_key(f"pkcs11:token={token_label};object={_label('ca')}", "ec-p256")
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Token Root")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    path = tmp_path / "root.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    r = subprocess.run(["openssl", "verify", "-CAfile", str(path), str(path)], capture_output=True, text=True)
    assert r.returncode == 0 and ": OK" in r.stdout, r.stdout + r.stderr
    # CRL and OCSP builders take the same key
    crl = (x509.CertificateRevocationListBuilder().issuer_name(name).last_update(now)
           .next_update(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    assert crl.is_signature_valid(key.public_key())


def test_eight_threads_signing_at_once(token_label):
    key = generate_key(f"pkcs11:token={token_label};object={_label('mt')}", "ec-p256")
    pub = key.public_key()
    results, errors = [], []

    def work(n):
        try:
            for i in range(150):
                msg = f"thread {n} message {i}".encode()
                results.append((msg, sign_raw(key, msg)))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, errors[:3]
    assert len(results) == 8 * 150
    for msg, sig in results:
        pub.verify(sig, msg, ec.ECDSA(hashes.SHA256()))


def test_lost_session_is_reopened(token_label):
    uri = f"pkcs11:token={token_label};object={_label('lost')}"
    key = generate_key(uri, "ec-p256")
    # close the session under the key's feet, as a token reset would
    key._ts.session.close()
    sig = sign_raw(key, b"after reset")
    key.public_key().verify(sig, b"after reset", ec.ECDSA(hashes.SHA256()))


def _child_sign(uri, q):
    try:
        key = load_key(uri)
        q.put(sign_raw(key, b"from child"))
    except Exception as e:  # pragma: no cover - reported through the queue
        q.put(e)


def test_forked_child_reinitialises_the_module(token_label):
    uri = f"pkcs11:token={token_label};object={_label('fork')}"
    key = generate_key(uri, "ec-p256")
    sign_raw(key, b"parent first")
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_sign, args=(uri, q))
    p.start()
    sig = q.get(timeout=60)
    p.join(60)
    assert isinstance(sig, bytes), sig
    key.public_key().verify(sig, b"from child", ec.ECDSA(hashes.SHA256()))
    key.public_key().verify(sign_raw(key, b"parent after"), b"parent after", ec.ECDSA(hashes.SHA256()))


def test_list_keys_finds_generated_key(token_label):
    label = _label("list")
    key = generate_key(f"pkcs11:token={token_label};object={label}", "ec-p384")
    found = [k for k in list_keys(token_label) if k.label == label]
    assert len(found) == 1
    assert found[0].key_type == "ec-p384"
    assert found[0].spki_sha256 == key_info(key).spki_sha256


def test_errors(token_label):
    label = _label("err")
    generate_key(f"pkcs11:token={token_label};object={label}", "ec-p256")
    with pytest.raises(KeyExists):
        generate_key(f"pkcs11:token={token_label};object={label}", "ec-p256")
    with pytest.raises(KeyNotFound, match="no private key"):
        load_key(f"pkcs11:token={token_label};object=does-not-exist")
    with pytest.raises(TokenNotFound, match="no-such-token"):
        load_key("pkcs11:token=no-such-token;object=x")
    with pytest.raises(UnsupportedKeyType):
        generate_key(f"pkcs11:token={token_label};object={_label()}", "ed25519")
    from unica.errors import ModuleNotFound

    with pytest.raises(ModuleNotFound):
        load_key(f"pkcs11:token={token_label};object=x?module-path=/nonexistent/module.so")


def test_wrong_pin_is_refused_without_retrying(unica, tmp_path):
    # a token of its own, so failed logins do not disturb other tests
    label = _label("pin")
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", "right-pin-1",
                    "--so-pin", "so-pin-123"], check=True, capture_output=True)
    r = unica("key", "generate", f"pkcs11:token={label};object=k", "--type", "ec-p256",
              env={"UNICA_PIN": "right-pin-1"})
    assert r.returncode == 0, r.stderr
    r = unica("key", "show", f"pkcs11:token={label};object=k", env={"UNICA_PIN": "wrong-pin"})
    from tests.conftest import assert_one_line_error

    assert_one_line_error(r, "wrong PIN", label)
    # the token still takes the right PIN: unica tried once and stopped
    r = unica("key", "show", f"pkcs11:token={label};object=k", env={"UNICA_PIN": "right-pin-1"})
    assert r.returncode == 0, r.stderr
