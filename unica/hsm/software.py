"""Software keys: encrypted PKCS#8 PEM files (PBES2 with scrypt and AES-256-CBC).

A loaded software key is a plain ``cryptography`` private key, so it goes straight into
cryptography's certificate, CRL and OCSP builders. A key is never written unencrypted, and
its file is created with mode 0600 (and never overwritten).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from cryptography.exceptions import UnsupportedAlgorithm

from unica.errors import CorruptKeyFile, KeyExists, KeyNotFound, PassphraseIncorrect, UnsupportedKeyType
from unica.hsm.keytypes import KeyType, is_sm2

_MAX_KEY_FILE = 64 * 1024


def new_private_key(key_type: KeyType):
    if key_type.is_ec:
        return ec.generate_private_key(key_type.curve)
    if key_type.is_rsa:
        return rsa.generate_private_key(public_exponent=65537, key_size=key_type.rsa_bits)
    if key_type is KeyType.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if key_type is KeyType.SM2:
        from unica.sm2 import SM2PrivateKey

        return SM2PrivateKey.generate()
    raise UnsupportedKeyType(f"key type {key_type.value} is not supported for software keys")


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    ln = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(ln)]) + ln + body


def _der_int(v: int) -> bytes:
    return _der(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))


_OID_PBES2 = bytes.fromhex("06092a864886f70d01050d")        # 1.2.840.113549.1.5.13
_OID_SCRYPT = bytes.fromhex("06092b06010401da47040b")          # 1.3.6.1.4.1.11591.4.11
_OID_AES256_CBC = bytes.fromhex("060960864801650304012a")    # 2.16.840.1.101.3.4.1.42

#: scrypt cost: N=2^14, r=8 (16 MiB, inside OpenSSL's default memory limit, so
#: ``openssl pkey`` reads unica's key files) and p=4 for extra time cost
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 4


def encrypt_private_key(key, passphrase: str) -> bytes:
    """Encrypted PKCS#8 PEM: PBES2 with scrypt and AES-256-CBC (RFC 8018, RFC 7914)."""
    import base64
    import secrets as _secrets

    from cryptography.hazmat.primitives import padding as sympad
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    if not passphrase:
        raise PassphraseIncorrect("an empty passphrase cannot protect a key file")
    salt, iv = _secrets.token_bytes(16), _secrets.token_bytes(16)
    kek = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase.encode("utf-8"))
    if is_sm2(key):
        plain = key.private_bytes_pkcs8()
    else:
        plain = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    padder = sympad.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(kek), modes.CBC(iv)).encryptor()
    blob = enc.update(padder.update(plain) + padder.finalize()) + enc.finalize()
    scrypt_params = _der(0x30, _der(0x04, salt) + _der_int(SCRYPT_N) + _der_int(SCRYPT_R)
                         + _der_int(SCRYPT_P) + _der_int(32))
    pbes2_params = _der(0x30, _der(0x30, _OID_SCRYPT + scrypt_params)
                        + _der(0x30, _OID_AES256_CBC + _der(0x04, iv)))
    info = _der(0x30, _der(0x30, _OID_PBES2 + pbes2_params) + _der(0x04, blob))
    b64 = base64.encodebytes(info).decode().replace("\n", "")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return ("-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + "\n".join(lines)
            + "\n-----END ENCRYPTED PRIVATE KEY-----\n").encode()


def write_key_file(path: Path, key, passphrase: str) -> None:
    """Write ``key`` encrypted to a new file ``path`` (mode 0600); refuse to overwrite."""
    pem = encrypt_private_key(key, passphrase)
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyExists(f"key file {path} already exists (unica never overwrites a key)") from None
    except OSError as e:
        raise KeyNotFound(f"cannot create key file {path}: {e.strerror or e}") from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        try:
            path.unlink()
        finally:
            raise


def generate_file_key(path: Path, key_type: KeyType, passphrase: str):
    key = new_private_key(key_type)
    write_key_file(path, key, passphrase)
    return key


def load_file_key(path: Path, passphrase: str):
    """Load and decrypt a key file. Refuses unencrypted files."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise KeyNotFound(f"key file {path} does not exist") from None
    except OSError as e:
        raise KeyNotFound(f"cannot read key file {path}: {e.strerror or e}") from None
    if len(data) > _MAX_KEY_FILE:
        raise CorruptKeyFile(f"key file {path} is too large to be a private key")
    if b"-----BEGIN ENCRYPTED PRIVATE KEY-----" not in data:
        if b"PRIVATE KEY-----" in data:
            raise CorruptKeyFile(f"key file {path} is not encrypted; unica only uses encrypted PKCS#8 keys")
        raise CorruptKeyFile(f"key file {path} is not an encrypted PKCS#8 PEM private key")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase.encode("utf-8"))
    except UnsupportedAlgorithm as e:
        if "1.2.156.10197.1.301" not in str(e):  # decrypted, but a curve cryptography lacks: SM2 is ours
            raise UnsupportedKeyType(f"key file {path} holds an unsupported key type: {e}") from None
        return _load_sm2(path, data, passphrase)
    except ValueError as e:
        msg = str(e).lower()
        if "incorrect password" in msg or "bad decrypt" in msg:
            raise PassphraseIncorrect(f"wrong passphrase for key file {path}") from None
        raise CorruptKeyFile(f"key file {path} is corrupted: {e}") from None
    except TypeError:
        raise PassphraseIncorrect(f"key file {path} needs a passphrase") from None
    except Exception as e:
        raise CorruptKeyFile(f"key file {path} is corrupted: {e}") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise UnsupportedKeyType(f"key file {path} holds an unsupported key type {type(key).__name__}")
    return key


def _load_sm2(path: Path, data: bytes, passphrase: str):
    """An SM2 key file: cryptography decrypted it (so the passphrase is right) but cannot load
    the curve. Decrypt it again here -- PBES2 with AES-CBC under scrypt (unica's own files, as
    :func:`encrypt_private_key` writes them) or PBKDF2-HMAC-SHA-2 (OpenSSL's) -- and read the
    PKCS#8 with :mod:`unica.sm2`."""
    from asn1crypto import keys, pem
    from cryptography.hazmat.primitives import padding as sympad
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    from unica.errors import UnicaError
    from unica.sm2 import SM2PrivateKey

    try:
        _, _, body = pem.unarmor(data)
        info = keys.EncryptedPrivateKeyInfo.load(body)
        alg = info["encryption_algorithm"]
        kdf = alg["parameters"]["key_derivation_func"]
        scheme = alg["parameters"]["encryption_scheme"]
        cipher = {"aes128_cbc": 16, "aes192_cbc": 24, "aes256_cbc": 32}.get(scheme["algorithm"].native)
        if alg["algorithm"].native != "pbes2" or cipher is None:
            raise ValueError("not PBES2 with AES-CBC")
        if kdf["algorithm"].dotted == "1.3.6.1.4.1.11591.4.11":  # scrypt: unica's own key files
            params = kdf["parameters"].native
            salt, n, r, p = params["0"], params["1"], params["2"], params["3"]
            if not (isinstance(salt, bytes) and 8 <= len(salt) <= 64 and n in (1 << 14, 1 << 15, 1 << 16, 1 << 17)
                    and 1 <= r <= 16 and 1 <= p <= 16):
                raise ValueError("scrypt parameters out of range")
            kek = Scrypt(salt=salt, length=cipher, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))
        elif kdf["algorithm"].native == "pbkdf2":  # what 'openssl genpkey -aes256' / 'openssl pkcs8' write
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

            params = kdf["parameters"]
            prf = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}.get(
                params["prf"]["algorithm"].native)
            rounds = params["iteration_count"].native
            if prf is None or not 1000 <= rounds <= 10_000_000:
                raise ValueError("PBKDF2 with an unsupported PRF or iteration count")
            kek = PBKDF2HMAC(prf(), cipher, params["salt"].native, rounds).derive(passphrase.encode("utf-8"))
        else:
            raise ValueError("a key derivation other than scrypt or PBKDF2")
        iv = scheme["parameters"].native
        dec = Cipher(algorithms.AES(kek), modes.CBC(iv)).decryptor()
        unpadder = sympad.PKCS7(128).unpadder()
        plain = bytearray(unpadder.update(dec.update(info["encrypted_data"].native) + dec.finalize())
                          + unpadder.finalize())
    except Exception as e:
        raise CorruptKeyFile(f"key file {path} is an SM2 key unica cannot read: {type(e).__name__}: {e}") from None
    try:
        return SM2PrivateKey.from_pkcs8_der(bytes(plain))
    except UnicaError as e:
        raise CorruptKeyFile(f"key file {path} is corrupted: {e}") from None
    finally:
        plain[:] = bytes(len(plain))
