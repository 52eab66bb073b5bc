"""Shared set-up for the signing benchmarks: a private SoftHSM2 token store in a temp dir.

Import this BEFORE anything loads the PKCS#11 module (SoftHSM2 reads SOFTHSM2_CONF once).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "bench-1234"
SO_PIN = "bench-so-5678"
TOKEN = "bench"


def setup() -> str:
    d = tempfile.mkdtemp(prefix="unica-bench-")
    atexit.register(shutil.rmtree, d, True)
    (tokens := os.path.join(d, "tokens")) and os.mkdir(tokens)
    conf = os.path.join(d, "softhsm2.conf")
    with open(conf, "w") as f:
        f.write(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = conf
    os.environ["UNICA_PKCS11_MODULE"] = MODULE
    os.environ["UNICA_PIN"] = PIN
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", SO_PIN],
                   check=True, capture_output=True)
    return d


def raw_key(label: str):
    """(session, private key) through python-pkcs11 directly, in this process."""
    import pkcs11
    from pkcs11 import ObjectClass

    lib = pkcs11.lib(MODULE)
    token = lib.get_token(token_label=TOKEN)
    session = token.open(user_pin=PIN)
    priv = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
    return session, priv
