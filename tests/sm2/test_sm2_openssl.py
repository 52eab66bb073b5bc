"""unica's SM2 against the ``openssl`` command line (the same libcrypto, but its own code paths for
reading keys and setting the ID), both ways, and the key formats each writes.

Not used as evidence: ``openssl verify`` on certificates (3.0.19 accepts a leaf signed with the
wrong ID, see notes). ``pkeyutl -rawin -digest sm3`` does hash Z || M with the given ID.
"""

from __future__ import annotations

import base64
import shutil

import pytest

from unica.errors import MalformedInput, SM2SignatureInvalid
from unica import sm2
from unica.sm2 import DEFAULT_ID, SM2PrivateKey, SM2PublicKey

from .peers import distid_opts, openssl

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")

IDS = {
    "default": DEFAULT_ID,
    "empty": b"",
    "email": b"alice@example.cn",
    "binary": bytes(range(1, 256)),
}


def _pem_body(pem: bytes) -> bytes:
    lines = [ln for ln in pem.decode("ascii").splitlines() if ln and not ln.startswith("-----")]
    return base64.b64decode("".join(lines))


@pytest.fixture(scope="module")
def openssl_key(tmp_path_factory):
    """(key.pem, pub.der) made by ``openssl genpkey -algorithm SM2``."""
    d = tmp_path_factory.mktemp("openssl-key")
    openssl("genpkey", "-algorithm", "SM2", "-out", d / "key.pem")
    openssl("pkey", "-in", d / "key.pem", "-pubout", "-outform", "DER", "-out", d / "pub.der")
    return d / "key.pem", d / "pub.der"


@pytest.fixture(scope="module")
def unica_key(tmp_path_factory):
    """(key, key.der PKCS#8, pub.der SPKI) made by unica."""
    d = tmp_path_factory.mktemp("unica-key")
    key = SM2PrivateKey.generate()
    (d / "key.der").write_bytes(key.private_bytes_pkcs8())
    (d / "pub.der").write_bytes(key.public_key().spki_der())
    return key, d / "key.der", d / "pub.der"


def test_unica_reads_an_openssl_genpkey_key(openssl_key, tmp_path):
    key_pem, pub_der = openssl_key
    # genpkey writes PKCS#8 PEM; its body is the PKCS#8 DER
    key = SM2PrivateKey.from_pkcs8_der(_pem_body(key_pem.read_bytes()))
    assert key.public_key().spki_der() == pub_der.read_bytes()
    assert SM2PublicKey.from_spki_der(pub_der.read_bytes()) == key.public_key()


def test_unica_refuses_openssl_pkey_der_which_is_sec1(openssl_key, tmp_path):
    """``openssl pkey -outform DER`` writes SEC1 ECPrivateKey, not PKCS#8: refused, clearly."""
    key_pem, _ = openssl_key
    openssl("pkey", "-in", key_pem, "-outform", "DER", "-out", tmp_path / "sec1.der")
    with pytest.raises(MalformedInput, match="not a PKCS#8"):
        SM2PrivateKey.from_pkcs8_der((tmp_path / "sec1.der").read_bytes())
    openssl("pkcs8", "-topk8", "-nocrypt", "-in", key_pem, "-outform", "DER", "-out", tmp_path / "p8.der")
    SM2PrivateKey.from_pkcs8_der((tmp_path / "p8.der").read_bytes())


def test_openssl_reads_unica_pkcs8(unica_key, tmp_path):
    key, key_der, pub_der = unica_key
    out = openssl("pkey", "-inform", "DER", "-in", key_der, "-pubout", "-outform", "DER").stdout
    assert out == pub_der.read_bytes() == key.public_key().spki_der()
    text = openssl("pkey", "-inform", "DER", "-in", key_der, "-noout", "-text").stdout.decode()
    assert "ASN1 OID: SM2" in text
    # and it is PKCS#8: version 0, AlgorithmIdentifier id-ecPublicKey with the SM2 curve
    parsed = [ln.split("prim:")[-1].split() for ln in
              openssl("asn1parse", "-inform", "DER", "-in", key_der).stdout.decode().splitlines()[1:5]]
    assert parsed[0] == ["INTEGER", ":00"]
    assert parsed[2] == ["OBJECT", ":id-ecPublicKey"] and parsed[3] == ["OBJECT", ":sm2"]


def test_spki_equals_openssl_pubout(unica_key, openssl_key):
    key, key_der, _ = unica_key
    assert openssl("pkey", "-inform", "DER", "-in", key_der, "-pubout", "-outform", "DER").stdout \
        == key.public_key().spki_der()
    key_pem, pub_der = openssl_key
    ours = SM2PrivateKey.from_pkcs8_der(_pem_body(key_pem.read_bytes())).public_key().spki_der()
    assert ours == pub_der.read_bytes()


@pytest.mark.parametrize("name", list(IDS))
def test_openssl_verifies_unica(unica_key, tmp_path, name):
    key, _, pub_der = unica_key
    sid = IDS[name]
    data = tmp_path / "data"
    data.write_bytes(b"signed by unica " * 100)
    (tmp_path / "sig").write_bytes(key.sign(data.read_bytes(), signer_id=sid))
    args = ["pkeyutl", "-verify", "-pubin", "-inkey", pub_der, "-keyform", "DER", "-rawin",
            "-digest", "sm3", "-in", data, "-sigfile", tmp_path / "sig"]
    ok = openssl(*args, *distid_opts(sid), check=False)
    assert ok.returncode == 0 and b"Signature Verified Successfully" in ok.stdout, ok.stderr
    wrong = openssl(*args, *distid_opts(sid + b"?"), check=False)
    assert wrong.returncode != 0 and b"Signature Verification Failure" in wrong.stdout


@pytest.mark.parametrize("name", list(IDS))
def test_unica_verifies_openssl(openssl_key, tmp_path, name):
    key_pem, pub_der = openssl_key
    sid = IDS[name]
    data = b"signed by openssl " * 100
    (tmp_path / "data").write_bytes(data)
    openssl("pkeyutl", "-sign", "-inkey", key_pem, "-rawin", "-digest", "sm3", *distid_opts(sid),
            "-in", tmp_path / "data", "-out", tmp_path / "sig")
    sig = (tmp_path / "sig").read_bytes()
    pub = SM2PublicKey.from_spki_der(pub_der.read_bytes())
    pub.verify(sig, data, signer_id=sid)
    with pytest.raises(SM2SignatureInvalid):
        pub.verify(sig, data, signer_id=sid + b"?")
    with pytest.raises(SM2SignatureInvalid):
        pub.verify(sig, data[:-1], signer_id=sid)


def test_openssl_default_id_is_empty(openssl_key, tmp_path):
    """A pitfall pinned down: ``pkeyutl`` with no distid signs with the EMPTY ID (OpenSSL 3.0),
    not GM/T 0009's default, so unica's default ID rejects it. Always pass the ID."""
    key_pem, pub_der = openssl_key
    (tmp_path / "data").write_bytes(b"x")
    openssl("pkeyutl", "-sign", "-inkey", key_pem, "-rawin", "-digest", "sm3",
            "-in", tmp_path / "data", "-out", tmp_path / "sig")
    pub = SM2PublicKey.from_spki_der(pub_der.read_bytes())
    sig = (tmp_path / "sig").read_bytes()
    pub.verify(sig, b"x", signer_id=b"")
    with pytest.raises(SM2SignatureInvalid):
        pub.verify(sig, b"x")


def test_sm3_equals_openssl_dgst(tmp_path):
    data = bytes(range(256)) * 41
    (tmp_path / "d").write_bytes(data)
    out = openssl("dgst", "-sm3", "-binary", tmp_path / "d").stdout
    assert out == sm2.sm3(data)
