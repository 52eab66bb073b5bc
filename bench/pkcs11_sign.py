"""Signatures per second through unica's PKCS#11 backend vs raw python-pkcs11, same token, same run.

    python bench/pkcs11_sign.py [--seconds 4] [--key-type ec-p256]

unica: ``unica.hsm.sign_raw(key, 32-byte message)`` on a token key from ``unica.hsm.load_key``
(software SHA-256, CKM_ECDSA on the token, DER encoding, module lock, cached session).
Raw: ``priv.sign(sha256(message), mechanism=Mechanism.ECDSA)`` straight through python-pkcs11 on
a second session of the same token. 1 and 2 workers (processes, each initialising the module
itself); inside each worker raw and unica alternate in 50 ms slices, so load from other
processes on the machine hits both alike. Target: unica >= 0.9 x raw per worker.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _softhsm  # noqa: E402

SLICE = 0.05


def _ops(label: str):
    """(raw op, unica op) for the key ``label``."""
    from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

    from unica.hsm import load_key, sign_raw
    from unica.hsm.pkcs11 import get_module

    msg = os.urandom(32)
    key = load_key(f"pkcs11:token={_softhsm.TOKEN};object={label}", pin=_softhsm.PIN)
    module = get_module(_softhsm.MODULE)
    with module.lock:
        session = module.find_token(_softhsm.TOKEN).open()  # logged in: login state is per process
        priv = next(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label}))
    if priv.key_type == KeyType.EC:
        # as documented above: hash the message per signature (unica has to, too)
        raw = lambda: priv.sign(hashlib.sha256(msg).digest(), mechanism=Mechanism.ECDSA)  # noqa: E731
    else:
        raw = lambda: priv.sign(msg, mechanism=Mechanism.SHA256_RSA_PKCS)  # noqa: E731
    unica = lambda: sign_raw(key, msg)  # noqa: E731
    raw(), unica()
    return raw, unica, session


def _worker(label: str, seconds: float, init_lock, start, out) -> None:
    # log in one process at a time: SoftHSM2 rewrites its token file on C_Login, and a
    # concurrent C_GetTokenInfo / C_Login in another process then fails (CKR_GENERAL_ERROR)
    with init_lock:
        raw, unica, _session = _ops(label)
    start.wait()
    counts = {"raw": 0, "unica": 0}
    spent = {"raw": 0.0, "unica": 0.0}
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for kind, op in (("raw", raw), ("unica", unica)):
            n, t0 = 0, time.perf_counter()
            stop = t0 + SLICE
            while True:
                for _ in range(10):
                    op()
                n += 10
                t = time.perf_counter()
                if t >= stop:
                    break
            counts[kind] += n
            spent[kind] += t - t0
    out.put({k: counts[k] / spent[k] for k in counts})


def run(label: str, workers: int, seconds: float) -> dict:
    """Mean signatures/s per worker, raw and unica."""
    ctx = mp.get_context("spawn")
    init_lock, start, out = ctx.Lock(), ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(label, seconds, init_lock, start, out)) for _ in range(workers)]
    for p in procs:
        p.start()
    rates = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return {k: sum(r[k] for r in rates) / len(rates) for k in ("raw", "unica")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--key-type", default="ec-p256")
    args = ap.parse_args()
    _softhsm.setup()
    from unica.hsm import generate_key

    label = "bench-" + args.key_type
    generate_key(f"pkcs11:token={_softhsm.TOKEN};object={label}", args.key_type, pin=_softhsm.PIN)
    from unica.hsm.pkcs11 import get_module

    get_module(_softhsm.MODULE).drop_sessions()
    print(f"SoftHSM2, {args.key_type}, {args.seconds:.0f} s per run, raw/unica alternating in "
          f"{SLICE * 1000:.0f} ms slices, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    ok = True
    for workers in (1, 2):
        r = run(label, workers, args.seconds)
        ratio = r["unica"] / r["raw"]
        ok &= ratio >= 0.9
        print(f"{workers} worker(s): raw python-pkcs11 {r['raw']:8.0f} sig/s/worker   "
              f"unica {r['unica']:8.0f} sig/s/worker   ratio {ratio:.2f} (target >= 0.90)   "
              f"unica total {r['unica'] * workers:.0f} sig/s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
