"""A second, independent PKCS#11 implementation for the key backup tests: NSS's software token.

``second_module`` yields ``SecondModule(module_path, token_label, pin)`` (a named tuple) for a fresh,
empty token of NSS softokn (``libsoftokn3.so`` from Debian's ``libnss3``) in the test's ``tmp_path``.
The test skips, saying what is missing, when NSS softokn, ``certutil`` (``libnss3-tools``) or a C
compiler is not there; with ``UNICA_REQUIRE_SECOND_PKCS11=1`` (CI, after
``scripts/second-pkcs11-setup.sh``) it fails instead.

Why a small C module in front of NSS: softokn wants its database directory in ``C_Initialize``'s
``pReserved`` (without it: ``CKR_ARGUMENTS_BAD``) and python-pkcs11 passes no arguments. The fixture
compiles a forwarding module (its ``C_Initialize`` passes the parameters of this test's token, every
other function is NSS's own) -- one per token, so ``module_path`` names the token's directory.
NSS initialises once per process: a process that loaded one such module gets
CKR_CRYPTOKI_ALREADY_INITIALIZED from the next one. Use the module from the ``unica`` binary (a
subprocess per call), not from the pytest process.

What NSS 3.87 does differently from SoftHSM2 2.6.1 (each point checked on Debian 12):
- ``CKM_AES_KEY_WRAP_PAD`` (0x210A) is RFC 3394 over PKCS#7-padded data, not RFC 5649 as in
  SoftHSM2: a blob of one does not unwrap on the other (NSS: CKR_WRAPPED_KEY_INVALID, SoftHSM2:
  CKR_GENERAL_ERROR). NSS's RFC 5649 is ``CKM_AES_KEY_WRAP_KWP`` (0x210B), which SoftHSM2 2.6.1 lacks
  (CKR_MECHANISM_INVALID); it unwraps SoftHSM2's ``CKM_AES_KEY_WRAP_PAD`` blobs.
- Wrapping with ``CKM_AES_KEY_WRAP_KWP`` through python-pkcs11 fails: NSS's length query answers the
  unpadded length (138 for a P-256 PKCS#8 that wraps to 152), so the second C_WrapKey returns
  CKR_BUFFER_TOO_SMALL. With a large enough buffer (ctypes) the blob is correct RFC 5649 and
  SoftHSM2 unwraps it with ``CKM_AES_KEY_WRAP_PAD``.
- Unwrapping an EC private key needs the public point in the vendor attribute ``CKA_NSS_DB``
  (:data:`CKA_NSS_DB`; register it on an ``AttributeMapper`` with ``handle_bytes``), else
  CKR_TEMPLATE_INCOMPLETE.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

import pytest

__all__ = ["SecondModule", "second_module", "make_token", "SecondModuleUnavailable", "CKA_NSS_DB",
           "CKM_AES_KEY_WRAP_KWP", "TOKEN_LABEL", "REQUIRE_ENV"]

#: set to 1 where the second module must be there (CI after scripts/second-pkcs11-setup.sh)
REQUIRE_ENV = "UNICA_REQUIRE_SECOND_PKCS11"
TOKEN_LABEL = "unica-second"
#: NSS vendor attribute (CKA_NETSCAPE_DB): the public value, required when unwrapping an EC private key
CKA_NSS_DB = 0xD5A0DB00
#: PKCS#11 3.0 AES key wrap with padding per RFC 5649 (NSS has it; SoftHSM2 2.6.1 does not)
CKM_AES_KEY_WRAP_KWP = 0x210B

_SOFTOKN_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libsoftokn3.so",
    "/usr/lib/aarch64-linux-gnu/libsoftokn3.so",
    "/usr/lib64/libsoftokn3.so",
    "/usr/lib/libsoftokn3.so",
)

# The forwarding module. Every function but C_Initialize is NSS softokn's own.
_SHIM_C = r"""
#include <dlfcn.h>
#include "init.h" /* SOFTOKN_PATH, SOFTOKN_PARAMS */
typedef unsigned long CK_RV;
typedef struct { unsigned char major, minor; } CK_VERSION;
typedef struct { CK_VERSION version; void *f[68]; } CK_FUNCTION_LIST; /* Cryptoki 2.x: 68 functions */
typedef struct { void *mutex_fns[4]; unsigned long flags; void *reserved; } CK_C_INITIALIZE_ARGS;
static CK_FUNCTION_LIST *real;
static CK_FUNCTION_LIST mine;
static char params[] = SOFTOKN_PARAMS;
static CK_RV shim_initialize(void *ignored) {
    CK_C_INITIALIZE_ARGS a = {{0, 0, 0, 0}, 0x2 /* CKF_OS_LOCKING_OK */, params};
    (void)ignored;
    return ((CK_RV (*)(void *))real->f[0])(&a);
}
CK_RV C_GetFunctionList(CK_FUNCTION_LIST **out) {
    if (!out) return 0x7; /* CKR_ARGUMENTS_BAD */
    if (!real) {
        void *h = dlopen(SOFTOKN_PATH, RTLD_NOW | RTLD_LOCAL);
        CK_RV (*get)(CK_FUNCTION_LIST **);
        if (!h) return 0x5; /* CKR_GENERAL_ERROR */
        get = (CK_RV (*)(CK_FUNCTION_LIST **))dlsym(h, "C_GetFunctionList");
        if (!get || get(&real) != 0 || !real) { real = 0; return 0x5; }
        mine = *real;
        mine.f[0] = (void *)shim_initialize;
    }
    *out = &mine;
    return 0;
}
"""


class SecondModuleUnavailable(RuntimeError):
    """NSS softokn, certutil or a C compiler is missing."""


class SecondModule(NamedTuple):
    module_path: str
    token_label: str
    pin: str


def softokn_path() -> str | None:
    for p in _SOFTOKN_CANDIDATES:
        if os.path.exists(p):
            return p
    found = ctypes.util.find_library("softokn3")
    return found if found and os.path.isabs(found) else None


def _requirements() -> tuple[str, str, str]:
    """(softokn, certutil, cc) or SecondModuleUnavailable naming what is missing."""
    missing = []
    softokn = softokn_path()
    if softokn is None:
        missing.append("NSS softokn (libsoftokn3.so, Debian package libnss3)")
    certutil = shutil.which("certutil")
    if certutil is None:
        missing.append("certutil (Debian package libnss3-tools)")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        missing.append("a C compiler (Debian packages gcc libc6-dev)")
    if missing:
        raise SecondModuleUnavailable("second PKCS#11 module (NSS softokn) unavailable: missing "
                                      + "; ".join(missing) + " -- run scripts/second-pkcs11-setup.sh as root")
    return softokn, certutil, cc


def make_token(directory: Path, *, label: str = TOKEN_LABEL, pin: str | None = None) -> SecondModule:
    """A fresh NSS softokn token in ``directory`` (created; must not exist) and its module."""
    softokn, certutil, cc = _requirements()
    directory = Path(directory).resolve()
    if "'" in str(directory) or len(label.encode()) > 32 or "'" in label:
        raise ValueError(f"unusable token directory or label: {directory}, {label!r}")
    pin = pin or "p-" + secrets.token_hex(6)
    db = directory / "db"
    db.mkdir(parents=True)
    pin_file = directory / "pin.txt"
    fd = os.open(pin_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pin + "\n")
    try:
        proc = subprocess.run([certutil, "-N", "-d", f"sql:{db}", "-f", str(pin_file)],
                              capture_output=True, text=True, timeout=60)
    finally:
        pin_file.unlink()
    if proc.returncode != 0:
        raise SecondModuleUnavailable(f"certutil -N failed ({proc.returncode}): {proc.stderr.strip()}")
    params = (f"configdir='sql:{db}' certPrefix='' keyPrefix='' secmod='secmod.db' flags= "
              f"dbTokenDescription='{label}'")
    # JSON string literals are valid C string literals for this ASCII/UTF-8 text
    (directory / "init.h").write_text(f"#define SOFTOKN_PATH {json.dumps(softokn)}\n"
                                      f"#define SOFTOKN_PARAMS {json.dumps(params)}\n")
    (directory / "shim.c").write_text(_SHIM_C)
    module = directory / "nss-softokn-pkcs11.so"
    proc = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-Wall", "-I", str(directory), "-o", str(module),
                           str(directory / "shim.c"), "-ldl"], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise SecondModuleUnavailable(f"compiling the NSS softokn forwarding module failed: {proc.stderr.strip()}")
    return SecondModule(str(module), label, pin)


@pytest.fixture
def second_module(tmp_path: Path):
    """``SecondModule(module_path, token_label, pin)``: a fresh token of NSS's software PKCS#11 module."""
    try:
        module = make_token(tmp_path / "second-pkcs11")
    except SecondModuleUnavailable as e:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{e} (and {REQUIRE_ENV}=1 says it must be there)", pytrace=False)
        pytest.skip(f"*** {e} ***")
    yield module


def self_check() -> str:
    """Make a token and run on it what a key backup needs: EC P-256 generation (sensitive,
    extractable), CKM_ECDSA, a session AES-256 key from a value, wrap and unwrap of the EC key (NSS's
    CKM_AES_KEY_WRAP_PAD, with CKA_NSS_DB), CKM_AES_KEY_WRAP_KWP listed, CKM_ECDH1_DERIVE with
    CKD_NULL. Returns a one-line summary."""
    import pkcs11
    from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
    from pkcs11.attributes import AttributeMapper, handle_bytes
    from pkcs11.constants import DEFAULT
    from pkcs11.mechanisms import KDF
    from pkcs11.util.ec import encode_named_curve_parameters
    from asn1crypto import core

    with tempfile.TemporaryDirectory() as tmp:
        m = make_token(Path(tmp) / "token")
        mapper = AttributeMapper()
        mapper.register_handler(CKA_NSS_DB, *handle_bytes)
        lib = pkcs11.lib(m.module_path)
        with lib.get_token(token_label=m.token_label).open(rw=True, user_pin=m.pin, attribute_mapper=mapper) as s:
            params = s.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
            pub, priv = params.generate_keypair(
                store=True, private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True})
            digest = bytes(32)
            assert pub.verify(digest, priv.sign(digest, mechanism=Mechanism.ECDSA), mechanism=Mechanism.ECDSA)
            kek = s.create_object({
                Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                Attribute.VALUE: secrets.token_bytes(32), Attribute.TOKEN: False,
                Attribute.WRAP: True, Attribute.UNWRAP: True})
            blob = kek.wrap_key(priv, mechanism=Mechanism.AES_KEY_WRAP_PAD)
            point = bytes(core.OctetString.load(pub[Attribute.EC_POINT]).native)
            restored = kek.unwrap_key(
                ObjectClass.PRIVATE_KEY, KeyType.EC, blob, mechanism=Mechanism.AES_KEY_WRAP_PAD, store=False,
                template={Attribute.SENSITIVE: True, Attribute.SIGN: True, CKA_NSS_DB: point,
                          Attribute.ENCRYPT: DEFAULT, Attribute.VERIFY: DEFAULT, Attribute.WRAP: DEFAULT,
                          Attribute.VERIFY_RECOVER: DEFAULT})
            assert pub.verify(digest, restored.sign(digest, mechanism=Mechanism.ECDSA), mechanism=Mechanism.ECDSA)
            assert Mechanism(CKM_AES_KEY_WRAP_KWP) in s.token.slot.get_mechanisms()
            z = priv.derive_key(KeyType.GENERIC_SECRET, 256, mechanism=Mechanism.ECDH1_DERIVE,
                                mechanism_param=(KDF.NULL, None, point),
                                template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
            assert len(z[Attribute.VALUE]) == 32
        return (f"NSS softokn {lib.library_version[0]}.{lib.library_version[1]} ({softokn_path()}): "
                f"EC P-256, ECDSA, AES key wrap/unwrap of an EC key, ECDH1_DERIVE ok")


if __name__ == "__main__":
    print(self_check())
