"""unica's SM2 against gmssl, a pure-Python SM2/SM3 that shares no code with OpenSSL, both ways.

The signer ID is the point: a wrong Z value (wrong ID, wrong ENTL, wrong curve constants) still
gives signatures that verify against the same implementation, so each direction also checks
that the *other* ID fails.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

if importlib.util.find_spec("gmssl") is None and not os.environ.get("CI"):
    # a test-only dependency; CI installs it, so there a missing gmssl fails (on the import below)
    pytest.skip("gmssl (pip install gmssl) is not installed", allow_module_level=True)

from unica.errors import SM2SignatureInvalid
from unica import sm2
from unica.sm2 import DEFAULT_ID, SM2PrivateKey, SM2PublicKey

from .peers import (N, curve, gm_keypair, gm_public_of, gm_sign, gm_sign_default_id, gm_sm3_hash,
                    gm_verify, gm_verify_default_id, pkcs8, scalar_of, spki, z_value)

IDS = {
    "default": DEFAULT_ID,
    "empty": b"",
    "email": b"alice@example.cn",
    "binary": bytes(range(256)),
    "longest": b"\xa5" * sm2.MAX_SIGNER_ID,
}
DATA = [b"", b"abc", bytes(range(256)) * 16]


@pytest.fixture(scope="module")
def key() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


def _other(sid: bytes) -> bytes:
    """Another ID of the same length (the longest ID cannot grow)."""
    return sid[:-1] + bytes([sid[-1] ^ 1]) if sid else b"x"


def _xy(pub: SM2PublicKey) -> bytes:
    return pub.spki_der()[-64:]


def test_the_z_formula_here_matches_gmssl_own():
    """The Z computed in peers.py for the default ID is the one gmssl's sign_with_sm3 uses."""
    d, xy = gm_keypair()
    sig = gm_sign_default_id(d, xy, b"message")
    assert gm_verify(xy, sig, b"message", DEFAULT_ID)
    assert not gm_verify(xy, sig, b"message", b"1234567812345679")


def test_curve_constants_agree():
    c = curve()
    assert int(c["n"], 16) == N
    assert c["p"].upper() == "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF"


def test_sm3_agrees():
    for data in (b"", b"abc", bytes(range(256)) * 33):
        assert sm2.sm3(data) == gm_sm3_hash(data)


def test_public_key_of_a_scalar_agrees(key):
    """unica (OpenSSL) and gmssl derive the same point from one scalar."""
    d = scalar_of(key.private_bytes_pkcs8())
    assert gm_public_of(d) == _xy(key.public_key())


@pytest.mark.parametrize("name", list(IDS))
def test_gmssl_verifies_unica(key, name):
    sid = IDS[name]
    xy = _xy(key.public_key())
    for data in DATA:
        sig = key.sign(data, signer_id=sid)
        assert gm_verify(xy, sig, data, sid)
        assert not gm_verify(xy, sig, data, _other(sid))
        assert not gm_verify(xy, sig, data + b"x", sid)


def test_gmssl_own_verify_accepts_unica_default_id(key):
    xy = _xy(key.public_key())
    assert gm_verify_default_id(xy, key.sign(b"data"), b"data")
    assert not gm_verify_default_id(xy, key.sign(b"data", signer_id=b""), b"data")


@pytest.mark.parametrize("name", list(IDS))
def test_unica_verifies_gmssl(name):
    sid = IDS[name]
    d, xy = gm_keypair()
    pub = SM2PublicKey.from_spki_der(spki(xy))
    for data in DATA:
        sig = gm_sign(d, xy, data, sid)
        pub.verify(sig, data, signer_id=sid)
        with pytest.raises(SM2SignatureInvalid):
            pub.verify(sig, data, signer_id=_other(sid))
        with pytest.raises(SM2SignatureInvalid):
            pub.verify(sig, data + b"x", signer_id=sid)


def test_unica_verifies_gmssl_own_sign_with_sm3():
    d, xy = gm_keypair()
    pub = SM2PublicKey.from_spki_der(spki(xy))
    sig = gm_sign_default_id(d, xy, b"data")
    pub.verify(sig, b"data")
    with pytest.raises(SM2SignatureInvalid):
        pub.verify(sig, b"data", signer_id=b"")


def test_unica_loads_a_gmssl_key():
    """A PKCS#8 built here from gmssl's scalar: unica derives gmssl's public point, and its
    signatures verify under gmssl with that point."""
    d, xy = gm_keypair()
    for der_ in (pkcs8(d), pkcs8(d, xy)):
        k = SM2PrivateKey.from_pkcs8_der(der_)
        assert k.public_key().spki_der() == spki(xy)
        assert gm_verify(xy, k.sign(b"m", signer_id=b"gm"), b"m", b"gm")
        assert scalar_of(k.private_bytes_pkcs8()) == d


def test_z_value_depends_on_entl_not_just_the_id_bytes():
    """Sanity of the peer: IDs b"" and b"\\0" give different Z (ENTL 0 vs 8)."""
    _, xy = gm_keypair()
    assert z_value(xy, b"") != z_value(xy, b"\0")


@pytest.mark.parametrize("signer_id", [DEFAULT_ID, b"ALICE@example"])
def test_where_gmssl_fails_openssl_judges(signer_id):
    """The fallback of peers._gmssl_or_openssl (gmssl 3.2.2 raises TypeError from its own point
    arithmetic on rare inputs): the openssl command line then gives the verdict, with the ID."""
    from .peers import _gmssl_or_openssl

    def gmssl_failing():
        raise TypeError("unsupported operand type(s) for *: 'NoneType' and 'int'")

    k = SM2PrivateKey.generate()
    xy = k.public_key().spki_der()[-64:]
    sig = k.sign(b"data", signer_id=signer_id)
    assert _gmssl_or_openssl(gmssl_failing, xy, sig, b"data", signer_id) is True
    assert _gmssl_or_openssl(gmssl_failing, xy, sig, b"other data", signer_id) is False
    assert _gmssl_or_openssl(gmssl_failing, xy, sig, b"data", b"another id") is False
