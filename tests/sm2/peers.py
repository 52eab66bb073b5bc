"""The independent peers the SM2 tests compare unica with: the pure-Python ``gmssl`` package
(test-only) and the ``openssl`` command line, plus small DER builders for crafted inputs.

gmssl's own ``sign_with_sm3`` / ``verify_with_sm3`` hard-code the default signer ID; for any
other ID the Z value of GB/T 32918.2 is computed here from its formula with gmssl's SM3 and
curve table (``Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA)``, ``e = SM3(Z || M)``) and
fed to gmssl's bare ``sign`` / ``verify``. None of this touches OpenSSL.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

#: order of the SM2 base point (GB/T 32918.5); test_sm2_gmssl checks it is gmssl's too
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123

#: id-ecPublicKey with namedCurve 1.2.156.10197.1.301
ALG_ID = bytes.fromhex("301306072a8648ce3d020106082a811ccf5501822d")


# --- DER ----------------------------------------------------------------------------------


def der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    ln = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(ln)]) + ln + body


def der_int(v: int) -> bytes:
    return der(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))


def pkcs8(d: int, pub_xy: bytes | None = None) -> bytes:
    """PKCS#8 PrivateKeyInfo of the SM2 scalar ``d`` (with the public point if given)."""
    ec = der_int(1) + der(0x04, d.to_bytes(32, "big"))
    if pub_xy is not None:
        ec += der(0xA1, der(0x03, b"\x00\x04" + pub_xy))
    return der(0x30, der_int(0) + ALG_ID + der(0x04, der(0x30, ec)))


def spki(pub_xy: bytes) -> bytes:
    return der(0x30, ALG_ID + der(0x03, b"\x00\x04" + pub_xy))


def scalar_of(pkcs8_der: bytes) -> int:
    """d from a PKCS#8 SM2 key, read with asn1crypto (not OpenSSL)."""
    from asn1crypto import keys

    info = keys.PrivateKeyInfo.load(pkcs8_der)
    ec = keys.ECPrivateKey.load(info["private_key"].contents)
    return ec["private_key"].native


def sig_der(r: int, s: int) -> bytes:
    return der(0x30, der_int(r) + der_int(s))


def sig_rs(sig: bytes) -> tuple[int, int]:
    from asn1crypto import algos

    v = algos.DSASignature.load(sig)
    return v["r"].native, v["s"].native


# --- gmssl (imported here only: the other test files run without it) ------------------------


def _gm():
    from gmssl import sm2 as gm_sm2
    from gmssl import sm3 as gm_sm3

    return gm_sm2, gm_sm3


def curve() -> dict:
    """gmssl's table of the SM2 curve: hex p, a, b, n and g (xG || yG)."""
    return _gm()[0].default_ecc_table


def gm_sm3_hash(data: bytes) -> bytes:
    return bytes.fromhex(_gm()[1].sm3_hash(list(data)))


def z_value(pub_xy: bytes, signer_id: bytes) -> bytes:
    entl = (len(signer_id) * 8).to_bytes(2, "big")
    c = curve()
    return gm_sm3_hash(entl + signer_id + bytes.fromhex(c["a"] + c["b"] + c["g"]) + pub_xy)


def _crypt(pub_xy: bytes, d: int | None = None):
    c = _gm()[0].CryptSM2(private_key="" if d is None else f"{d:064x}", public_key="00" * 64)
    # set after __init__: it strips leading "0"/"4" characters (lstrip("04")) from the hex
    c.public_key = pub_xy.hex()
    return c


def gm_keypair() -> tuple[int, bytes]:
    """(d, X || Y) made by gmssl's own scalar multiplication."""
    d = secrets.randbelow(N - 2) + 1
    c = _crypt(b"\0" * 64, d)
    return d, bytes.fromhex(c._kg(d, curve()["g"]))


def gm_public_of(d: int) -> bytes:
    return bytes.fromhex(_crypt(b"\0" * 64, d)._kg(d, curve()["g"]))


def gm_sign(d: int, pub_xy: bytes, data: bytes, signer_id: bytes) -> bytes:
    """gmssl signature (DER) of ``data`` with ``signer_id``."""
    e = gm_sm3_hash(z_value(pub_xy, signer_id) + data)
    c = _crypt(pub_xy, d)
    while True:
        try:
            out = c.sign(e, f"{secrets.randbelow(N - 1) + 1:064x}")
        except TypeError:  # gmssl's point arithmetic failing on this k (see _gmssl_or_openssl): another k
            continue
        if out is not None:
            return sig_der(int(out[:64], 16), int(out[64:], 16))


def gm_verify(pub_xy: bytes, sig: bytes, data: bytes, signer_id: bytes) -> bool:
    r, s = sig_rs(sig)
    if not (0 < r < N and 0 < s < N):
        return False
    e = gm_sm3_hash(z_value(pub_xy, signer_id) + data)
    return _gmssl_or_openssl(lambda: _crypt(pub_xy).verify(f"{r:064x}{s:064x}", e), pub_xy, sig, data, signer_id)


def gm_verify_default_id(pub_xy: bytes, sig: bytes, data: bytes) -> bool:
    """gmssl's own verify_with_sm3 (its built-in Z with the default ID)."""
    r, s = sig_rs(sig)
    return _gmssl_or_openssl(lambda: _crypt(pub_xy).verify_with_sm3(f"{r:064x}{s:064x}", data), pub_xy, sig, data,
                             DEFAULT_ID)


#: the GM/T 0009 default signer ID
DEFAULT_ID = b"1234567812345678"


def _gmssl_or_openssl(check, pub_xy: bytes, sig: bytes, data: bytes, signer_id: bytes) -> bool:
    """gmssl's verdict; when gmssl's own point arithmetic fails on an input (gmssl 3.2.2 returns
    None from a point operation on rare inputs and then raises TypeError: seen in CI on valid
    signatures), the openssl command line checks the signature instead, the ID given explicitly.
    Either way an implementation other than unica's judges it."""
    try:
        return bool(check())
    except TypeError:
        return openssl_verifies(spki(pub_xy), sig, data, signer_id)


def openssl_verifies(spki_der: bytes, sig: bytes, data: bytes, signer_id: bytes = DEFAULT_ID) -> bool:
    import tempfile

    with tempfile.TemporaryDirectory() as t:
        key, sigf, msg = Path(t, "k.der"), Path(t, "s.der"), Path(t, "m.bin")
        key.write_bytes(spki_der), sigf.write_bytes(sig), msg.write_bytes(data)
        p = openssl("pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", key, "-rawin", "-digest", "sm3",
                    *distid_opts(signer_id), "-in", msg, "-sigfile", sigf, check=False)
        return p.returncode == 0 and b"Signature Verified Successfully" in p.stdout


def gm_sign_default_id(d: int, pub_xy: bytes, data: bytes) -> bytes:
    """gmssl's own sign_with_sm3 (its built-in Z with the default ID)."""
    c = _crypt(pub_xy, d)
    while True:
        try:
            out = c.sign_with_sm3(data, f"{secrets.randbelow(N - 1) + 1:064x}")
        except TypeError:  # see gm_sign
            continue
        if out is not None:
            return sig_der(int(out[:64], 16), int(out[64:], 16))


# --- openssl CLI ----------------------------------------------------------------------------


def openssl(*args: str | Path, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["openssl", *map(str, args)], input=input if input is not None else b"",
                          capture_output=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args))}: {proc.stderr.decode(errors='replace')}")
    return proc


def distid_opts(signer_id: bytes) -> list[str]:
    """``-pkeyopt hexdistid:...`` for ``openssl pkeyutl``; none for the empty ID (OpenSSL 3.0's
    own default, see test_openssl_default_id_is_empty; ``hexdistid:`` with nothing is refused)."""
    return ["-pkeyopt", "hexdistid:" + signer_id.hex()] if signer_id else []
