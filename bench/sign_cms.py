"""CMS (CAdES-BES) signatures per second with a token key through unica vs raw python-pkcs11 signing.

    python bench/sign_cms.py [--seconds 4] [--size 2048] [--key-type ec-p256]

unica: ``CMSSigner(identity).sign(document)`` -- SHA-256 of the document, the signed attributes
(content-type, message-digest, signing-time, signing-certificate-v2), the signature on the
SoftHSM2 token, the DER SignedData with the certificate embedded (what ``unica sign cms`` and
``unica.sign.sign_cms`` write). Also ``sign_cms(...)`` one call per document (template cached).
Raw: ``priv.sign(sha256(document), mechanism=Mechanism.ECDSA)`` through python-pkcs11 on a
second session of the same token -- a bare signature, no CMS. The kinds alternate in 50 ms
slices in one process, so machine load hits all alike. Target: unica CMS >= 0.7 x raw.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _softhsm  # noqa: E402

SLICE = 0.05


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--size", type=int, default=2048, help="document size in bytes")
    ap.add_argument("--key-type", default="ec-p256")
    args = ap.parse_args()
    _softhsm.setup()

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

    from unica.hsm import generate_key
    from unica.hsm.pkcs11 import get_module
    from unica.sign import CMSSigner, SigningIdentity, sign_cms

    label = "cms-" + args.key_type
    key = generate_key(f"pkcs11:token={_softhsm.TOKEN};object={label}", args.key_type, pin=_softhsm.PIN)
    name = x509.Name.from_rfc4514_string("CN=bench signer,O=某某有限公司,C=CN")
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(int.from_bytes(os.urandom(16), "big") >> 1)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    identity = SigningIdentity(key, cert)
    signer = CMSSigner(identity)
    doc = os.urandom(args.size)

    module = get_module(_softhsm.MODULE)
    with module.lock:
        session = module.find_token(_softhsm.TOKEN).open()  # logged in already (per process)
        priv = next(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label}))
    if priv.key_type == KeyType.EC:
        raw = lambda: priv.sign(hashlib.sha256(doc).digest(), mechanism=Mechanism.ECDSA)  # noqa: E731
    else:
        raw = lambda: priv.sign(doc, mechanism=Mechanism.SHA256_RSA_PKCS)  # noqa: E731
    ops = {
        "raw": raw,
        "cms": lambda: signer.sign(doc),
        "sign_cms": lambda: sign_cms(doc, identity),
    }
    for op in ops.values():
        op()
    counts = {k: 0 for k in ops}
    spent = {k: 0.0 for k in ops}
    end = time.perf_counter() + args.seconds
    while time.perf_counter() < end:
        for kind, op in ops.items():
            n, t0 = 0, time.perf_counter()
            stop = t0 + SLICE
            while True:
                for _ in range(5):
                    op()
                n += 5
                t = time.perf_counter()
                if t >= stop:
                    break
            counts[kind] += n
            spent[kind] += t - t0
    rate = {k: counts[k] / spent[k] for k in ops}
    print(f"SoftHSM2, {args.key_type}, {args.size}-byte documents, {args.seconds:.0f} s, alternating "
          f"{SLICE * 1000:.0f} ms slices, load {os.getloadavg()[0]:.1f}")
    print(f"raw python-pkcs11 signature     {rate['raw']:8.0f} /s")
    print(f"unica CMSSigner.sign (CAdES)    {rate['cms']:8.0f} /s   ratio {rate['cms'] / rate['raw']:.2f} (target >= 0.70)")
    print(f"unica sign_cms() per document   {rate['sign_cms']:8.0f} /s   ratio {rate['sign_cms'] / rate['raw']:.2f}")
    return 0 if rate["cms"] / rate["raw"] >= 0.7 else 1


if __name__ == "__main__":
    sys.exit(main())
