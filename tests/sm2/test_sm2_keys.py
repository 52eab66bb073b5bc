"""unica.sm2 on its own: round trips, every way a signature must fail, malformed and foreign
keys refused with typed errors, the OpenSSL error queue left empty, one key shared by threads."""

from __future__ import annotations

import threading

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from unica.errors import (InputError, KeyBackendError, MalformedInput, SM2Error, SM2SignatureInvalid,
                          UnicaError, UnsupportedKeyType)
from unica import sm2
from unica.sm2 import DEFAULT_ID, SM2PrivateKey, SM2PublicKey

from .peers import ALG_ID, N, der, pkcs8, scalar_of, sig_der, sig_rs

IDS = [DEFAULT_ID, b"", b"alice@example.cn", bytes(range(256)), b"A" * sm2.MAX_SIGNER_ID]


@pytest.fixture(scope="module")
def key() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def other() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


def _queue_empty() -> bool:
    return sm2._lib.ERR_peek_error() == 0


def test_constants():
    assert DEFAULT_ID == b"1234567812345678"
    assert sm2.SM2_CURVE_OID == "1.2.156.10197.1.301"
    assert sm2.SM2_WITH_SM3_OID == "1.2.156.10197.1.501"


@pytest.mark.parametrize("signer_id", IDS, ids=["default", "empty", "email", "binary", "longest"])
def test_sign_verify_round_trip(key, signer_id):
    for data in (b"", b"abc", bytes(range(256)) * 400):
        sig = key.sign(data, signer_id=signer_id)
        key.public_key().verify(sig, data, signer_id=signer_id)
        # DER SEQUENCE {r, s}, both in [1, n-1]
        r, s = sig_rs(sig)
        assert 0 < r < N and 0 < s < N
        assert sig == sig_der(r, s)
    assert _queue_empty()


def test_signatures_are_randomised(key):
    assert key.sign(b"same") != key.sign(b"same")


def test_bytes_like_inputs(key):
    sig = key.sign(bytearray(b"data"), signer_id=memoryview(b"id"))
    key.public_key().verify(memoryview(sig), bytearray(b"data"), signer_id=bytearray(b"id"))


def test_default_id_is_the_gmt0009_one(key):
    sig = key.sign(b"data")
    key.public_key().verify(sig, b"data", signer_id=b"1234567812345678")
    with pytest.raises(SM2SignatureInvalid):
        key.public_key().verify(sig, b"data", signer_id=b"")


@pytest.mark.parametrize("case", ["wrong-id", "id-prefix", "tampered-data", "other-key",
                                  "tampered-r", "tampered-s", "truncated", "trailing-byte",
                                  "r+n", "swapped", "zero", "empty", "not-der", "too-long"])
def test_bad_signatures_fail(key, other, case):
    data, sid = b"the signed data", b"signer-1"
    sig = key.sign(data, signer_id=sid)
    pub = key.public_key()
    r, s = sig_rs(sig)
    bad = {
        "wrong-id": lambda: pub.verify(sig, data, signer_id=b"signer-2"),
        "id-prefix": lambda: pub.verify(sig, data, signer_id=b"signer-"),
        "tampered-data": lambda: pub.verify(sig, data + b".", signer_id=sid),
        "other-key": lambda: other.public_key().verify(sig, data, signer_id=sid),
        "tampered-r": lambda: pub.verify(sig_der(r ^ 1, s), data, signer_id=sid),
        "tampered-s": lambda: pub.verify(sig_der(r, s ^ 1), data, signer_id=sid),
        "truncated": lambda: pub.verify(sig[:-1], data, signer_id=sid),
        "trailing-byte": lambda: pub.verify(sig + b"\0", data, signer_id=sid),
        "r+n": lambda: pub.verify(sig_der(r + N, s), data, signer_id=sid),
        "swapped": lambda: pub.verify(sig_der(s, r), data, signer_id=sid),
        "zero": lambda: pub.verify(sig_der(0, 0), data, signer_id=sid),
        "empty": lambda: pub.verify(b"", data, signer_id=sid),
        "not-der": lambda: pub.verify(r.to_bytes(32, "big") + s.to_bytes(32, "big"), data, signer_id=sid),
        "too-long": lambda: pub.verify(sig + b"\0" * 64, data, signer_id=sid),
    }[case]
    with pytest.raises(SM2SignatureInvalid) as e:
        bad()
    assert "\n" not in str(e.value)
    assert _queue_empty()
    pub.verify(sig, data, signer_id=sid)  # and the real one still does


def test_non_minimal_der_signature_refused(key):
    """A BER-ish re-encoding of a valid (r, s) (long-form length) is not accepted: only DER."""
    data = b"x"
    sig = key.sign(data)
    body = sig[2:]
    with pytest.raises(SM2SignatureInvalid):
        key.public_key().verify(b"\x30\x81" + bytes([len(body)]) + body, data)


def test_signer_id_bounds(key):
    too_long = b"A" * (sm2.MAX_SIGNER_ID + 1)
    with pytest.raises(InputError, match="signer ID of 8191 bytes is too long"):
        key.sign(b"x", signer_id=too_long)
    with pytest.raises(InputError):
        key.public_key().verify(key.sign(b"x"), b"x", signer_id=too_long)
    with pytest.raises(TypeError):
        key.sign(b"x", signer_id="1234567812345678")
    with pytest.raises(TypeError):
        key.sign("text")
    with pytest.raises(TypeError):
        sm2.sm3("text")


def test_pkcs8_round_trip(key):
    der_ = key.private_bytes_pkcs8()
    again = SM2PrivateKey.from_pkcs8_der(der_)
    assert again.public_key() == key.public_key()
    assert again.private_bytes_pkcs8() == der_
    key.public_key().verify(again.sign(b"m"), b"m")


def test_spki_round_trip_and_equality(key, other):
    spki = key.public_key().spki_der()
    assert len(spki) == 91
    pub = SM2PublicKey.from_spki_der(spki)
    assert pub == key.public_key() and hash(pub) == hash(key.public_key())
    assert pub != other.public_key()
    assert pub.spki_der() == spki
    pub.verify(key.sign(b"m"), b"m")


def test_the_spki_as_asn1crypto_reads_it(key):
    """asn1crypto (not OpenSSL) reads the SPKI as id-ecPublicKey with the SM2 curve OID."""
    from asn1crypto import keys

    info = keys.PublicKeyInfo.load(key.public_key().spki_der())
    assert info["algorithm"]["algorithm"].dotted == "1.2.840.10045.2.1"
    assert info["algorithm"]["parameters"].chosen.dotted == sm2.SM2_CURVE_OID


def test_the_public_key_does_not_hold_the_private_key(key):
    assert key.public_key()._pkey != key._pkey
    assert not hasattr(key.public_key(), "sign")


# --- crafted and foreign keys -------------------------------------------------------------------


@pytest.mark.parametrize("d", [0, N - 1, N, N + 1, 2**256 - 1], ids=["0", "n-1", "n", "n+1", "2^256-1"])
def test_out_of_range_scalars_refused(d):
    """d = n - 1 is in range for ECDSA but not for SM2: (1 + d) has no inverse mod n."""
    with pytest.raises(MalformedInput, match="not a valid SM2 key"):
        SM2PrivateKey.from_pkcs8_der(pkcs8(d))
    assert _queue_empty()


@pytest.mark.parametrize("d", [1, 2, N - 2])
def test_edge_scalars_sign(d):
    k = SM2PrivateKey.from_pkcs8_der(pkcs8(d))
    k.public_key().verify(k.sign(b"edge"), b"edge")


def test_public_point_not_matching_the_scalar_refused(key, other):
    xy = other.public_key().spki_der()[-64:]
    with pytest.raises(MalformedInput, match="not a valid SM2 key"):
        SM2PrivateKey.from_pkcs8_der(pkcs8(scalar_of(key.private_bytes_pkcs8()), xy))


def test_pkcs8_without_public_point_gets_it_computed(key):
    again = SM2PrivateKey.from_pkcs8_der(pkcs8(scalar_of(key.private_bytes_pkcs8())))
    assert again.public_key() == key.public_key()


def _foreign_keys():
    return {
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }


@pytest.mark.parametrize("kind", ["p256", "rsa", "ed25519"])
def test_non_sm2_keys_refused(kind):
    k = _foreign_keys()[kind]
    p8 = k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                         serialization.NoEncryption())
    with pytest.raises(UnsupportedKeyType, match="not an SM2 key"):
        SM2PrivateKey.from_pkcs8_der(p8)
    spki = k.public_key().public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(UnsupportedKeyType, match="not an SM2 key"):
        SM2PublicKey.from_spki_der(spki)
    assert _queue_empty()


def _malformed_private(key) -> dict:
    good = key.private_bytes_pkcs8()
    return {
        "empty": b"",
        "garbage": b"not a key at all",
        "truncated": good[:-1],
        "trailing": good + b"\0",
        # the ECPrivateKey inside: what `openssl pkey -outform DER` writes for an EC key
        "sec1-not-pkcs8": good[good.index(b"\x30\x6b\x02\x01\x01"):],
        "spki-as-private": key.public_key().spki_der(),
        "huge": b"\x30\x82\x10\x00" + b"\0" * 5000,
        "pem": b"-----BEGIN PRIVATE KEY-----\n",
    }


@pytest.mark.parametrize("case", ["empty", "garbage", "truncated", "trailing", "sec1-not-pkcs8",
                                  "spki-as-private", "huge", "pem"])
def test_malformed_private_keys(key, case):
    with pytest.raises(MalformedInput) as e:
        SM2PrivateKey.from_pkcs8_der(_malformed_private(key)[case])
    assert "\n" not in str(e.value) and str(e.value).startswith("SM2 private key DER")
    assert _queue_empty()


def _compressed(spki: bytes) -> bytes:
    x, y = spki[-64:-32], spki[-32:]
    return der(0x30, ALG_ID + der(0x03, b"\x00" + bytes([2 + (y[-1] & 1)]) + x))


@pytest.mark.parametrize("case", ["empty", "garbage", "truncated", "trailing", "off-curve",
                                  "infinity", "private-as-public", "huge"])
def test_malformed_public_keys(key, case):
    good = key.public_key().spki_der()
    off = bytearray(good)
    off[-1] ^= 1
    der_ = {
        "empty": b"",
        "garbage": b"\x30\x03\x02\x01\x00",
        "truncated": good[:-1],
        "trailing": good + b"\0",
        "off-curve": bytes(off),
        "infinity": der(0x30, ALG_ID + der(0x03, b"\x00\x00")),  # the point 0x00
        "private-as-public": key.private_bytes_pkcs8(),
        "huge": b"\x30\x82\x10\x00" + b"\0" * 5000,
    }[case]
    with pytest.raises(MalformedInput) as e:
        SM2PublicKey.from_spki_der(der_)
    assert "\n" not in str(e.value)
    assert _queue_empty()


def test_compressed_point_refused(key):
    """Accepting it would let one key have two SPKIs (and compare unequal to itself)."""
    with pytest.raises((UnsupportedKeyType, MalformedInput)):
        SM2PublicKey.from_spki_der(_compressed(key.public_key().spki_der()))
    assert _queue_empty()


def test_errors_are_unica_errors():
    assert issubclass(SM2SignatureInvalid, UnicaError)
    assert issubclass(SM2Error, KeyBackendError)


# --- SM3 -----------------------------------------------------------------------------------------


def test_sm3_vectors():
    # GB/T 32905-2016 Annex A, examples 1 and 2
    assert sm2.sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert sm2.sm3(b"abcd" * 16).hex() == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


# --- threads -------------------------------------------------------------------------------------


def test_one_key_shared_by_threads(key):
    """8 threads sign and verify with one key object at once (cffi drops the GIL in each call)."""
    pub = key.public_key()
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(i: int) -> None:
        try:
            start.wait()
            sid = f"thread-{i}".encode()
            for n in range(150):
                data = f"{i}:{n}".encode()
                sig = key.sign(data, signer_id=sid)
                pub.verify(sig, data, signer_id=sid)
                with pytest.raises(SM2SignatureInvalid):
                    pub.verify(sig, data + b"!", signer_id=sid)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


def test_keys_are_freed():
    """No reference cycle keeps a key object (and so its ffi.gc-owned EVP_PKEY) alive."""
    import gc
    import weakref

    k = SM2PrivateKey.generate()
    pub = k.public_key()
    refs = [weakref.ref(k), weakref.ref(pub)]
    del k, pub
    gc.collect()
    assert all(r() is None for r in refs)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_no_leak_in_a_loop(key):
    """400 rounds of every operation, successful and failing, do not grow the process.

    Measured on this machine: the loop leak-free grows 0-4 KB; the same loop leaking one public
    EVP_PKEY a round (~2.2 KB) grows 860-880 KB. The bound is 300 KB."""
    der_ = key.private_bytes_pkcs8()
    spki = key.public_key().spki_der()
    sig = key.sign(b"x")

    def one_round():
        k = SM2PrivateKey.from_pkcs8_der(der_)
        k.public_key().verify(k.sign(b"x", signer_id=b"id"), b"x", signer_id=b"id")
        k.private_bytes_pkcs8()
        p = SM2PublicKey.from_spki_der(spki)
        for bad in (lambda: p.verify(sig, b"y"), lambda: p.verify(sig[:-1], b"x"),
                    lambda: SM2PublicKey.from_spki_der(spki[:-1]),
                    lambda: SM2PrivateKey.from_pkcs8_der(pkcs8(N - 1))):
            try:
                bad()
            except UnicaError:
                pass
        sm2.sm3(b"x")

    for _ in range(100):  # warm up allocator arenas and OpenSSL's caches
        one_round()
    before = _rss_bytes()
    for _ in range(400):
        one_round()
    assert _rss_bytes() - before < 300_000
