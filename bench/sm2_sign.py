"""SM2-with-SM3 signatures (and verifications) per second through unica.sm2 vs the same OpenSSL
EVP calls made directly through cffi, same key, same process, same run.

    python bench/sm2_sign.py [--seconds 4] [--size 32] [--record]

unica: ``SM2PrivateKey.sign(message, signer_id=DEFAULT_ID)`` and ``SM2PublicKey.verify(...)``
(argument checks, fresh contexts per call, error-queue hygiene).
Baseline ("raw"): a separate cffi FFI over the same libcrypto, the key loaded from the same PKCS#8,
and per operation exactly the EVP calls unica makes -- EVP_MD_CTX_new, EVP_PKEY_CTX_new,
EVP_PKEY_CTX_set1_id, EVP_MD_CTX_set_pkey_ctx, EVP_DigestSignInit(EVP_sm3()) / EVP_DigestSign (or
the Verify pair), the two frees -- with its views of the message, ID and signature made once, outside
the loop (only the output buffer is per call: the threads share the closure), and no checks beyond
the return codes. Raw and unica alternate in 50 ms slices, so load from other processes
hits both alike. 1 thread, then 2 threads sharing the one key (cffi drops the GIL in each call).
Target: unica >= 0.9 x raw for signing.

--record appends the output, with the date, load average and command, to
bench/results/sm2_sign.txt.
"""

from __future__ import annotations

import argparse
import ctypes.util
import datetime
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unica import sm2  # noqa: E402
from unica.sm2 import DEFAULT_ID, SM2PrivateKey  # noqa: E402

SLICE = 0.05
RESULTS = Path(__file__).resolve().parent / "results" / "sm2_sign.txt"

_RAW_CDEF = """
typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;
typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef struct evp_md_st EVP_MD;
typedef struct engine_st ENGINE;
typedef struct pkcs8_priv_key_info_st PKCS8_PRIV_KEY_INFO;
const EVP_MD *EVP_sm3(void);
void EVP_PKEY_free(EVP_PKEY *pkey);
EVP_PKEY_CTX *EVP_PKEY_CTX_new(EVP_PKEY *pkey, ENGINE *e);
void EVP_PKEY_CTX_free(EVP_PKEY_CTX *ctx);
int EVP_PKEY_CTX_set1_id(EVP_PKEY_CTX *ctx, const void *id, int len);
EVP_MD_CTX *EVP_MD_CTX_new(void);
void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
void EVP_MD_CTX_set_pkey_ctx(EVP_MD_CTX *ctx, EVP_PKEY_CTX *pctx);
int EVP_DigestSignInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type, ENGINE *e, EVP_PKEY *pkey);
int EVP_DigestSign(EVP_MD_CTX *ctx, unsigned char *sigret, size_t *siglen, const unsigned char *tbs, size_t tbslen);
int EVP_DigestVerifyInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type, ENGINE *e, EVP_PKEY *pkey);
int EVP_DigestVerify(EVP_MD_CTX *ctx, const unsigned char *sig, size_t siglen, const unsigned char *tbs, size_t tbslen);
PKCS8_PRIV_KEY_INFO *d2i_PKCS8_PRIV_KEY_INFO(PKCS8_PRIV_KEY_INFO **a, const unsigned char **pp, long length);
void PKCS8_PRIV_KEY_INFO_free(PKCS8_PRIV_KEY_INFO *a);
EVP_PKEY *EVP_PKCS82PKEY(const PKCS8_PRIV_KEY_INFO *p8);
"""


def raw_ops(pkcs8_der: bytes, msg: bytes, sig_for_verify: bytes):
    """(sign, verify) closures over the bare EVP calls."""
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(_RAW_CDEF)
    lib = ffi.dlopen(ctypes.util.find_library("crypto") or sm2._DEBIAN_LIBCRYPTO)
    buf = ffi.from_buffer("unsigned char[]", pkcs8_der)
    p = ffi.new("const unsigned char **", buf)
    p8 = lib.d2i_PKCS8_PRIV_KEY_INFO(ffi.NULL, p, len(pkcs8_der))
    pkey = ffi.gc(lib.EVP_PKCS82PKEY(p8), lib.EVP_PKEY_free)
    lib.PKCS8_PRIV_KEY_INFO_free(p8)
    md = lib.EVP_sm3()
    null = ffi.NULL
    sid, sid_len = ffi.from_buffer(DEFAULT_ID), len(DEFAULT_ID)
    m, m_len = ffi.from_buffer("unsigned char[]", msg), len(msg)
    s, s_len = ffi.from_buffer("unsigned char[]", sig_for_verify), len(sig_for_verify)

    def sign():
        # per call, like unica: a thread-private output buffer and length
        sig = ffi.new("unsigned char[72]")
        siglen = ffi.new("size_t *", 72)
        mctx = lib.EVP_MD_CTX_new()
        pctx = lib.EVP_PKEY_CTX_new(pkey, null)
        ok = (lib.EVP_PKEY_CTX_set1_id(pctx, sid, sid_len) == 1
              and (lib.EVP_MD_CTX_set_pkey_ctx(mctx, pctx) or True)
              and lib.EVP_DigestSignInit(mctx, null, md, null, pkey) == 1
              and lib.EVP_DigestSign(mctx, sig, siglen, m, m_len) == 1)
        lib.EVP_MD_CTX_free(mctx)
        lib.EVP_PKEY_CTX_free(pctx)
        if not ok:
            raise RuntimeError("raw EVP_DigestSign failed")
        return ffi.buffer(sig, siglen[0])[:]

    def verify():
        mctx = lib.EVP_MD_CTX_new()
        pctx = lib.EVP_PKEY_CTX_new(pkey, null)
        ok = (lib.EVP_PKEY_CTX_set1_id(pctx, sid, sid_len) == 1
              and (lib.EVP_MD_CTX_set_pkey_ctx(mctx, pctx) or True)
              and lib.EVP_DigestVerifyInit(mctx, null, md, null, pkey) == 1
              and lib.EVP_DigestVerify(mctx, s, s_len, m, m_len) == 1)
        lib.EVP_MD_CTX_free(mctx)
        lib.EVP_PKEY_CTX_free(pctx)
        if not ok:
            raise RuntimeError("raw EVP_DigestVerify failed")

    return sign, verify


def _alternate(ops: dict, seconds: float, start: threading.Barrier, out: list) -> None:
    """Run each op in turn for SLICE seconds until ``seconds`` are spent; op/s per name."""
    counts = dict.fromkeys(ops, 0)
    spent = dict.fromkeys(ops, 0.0)
    start.wait()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for name, op in ops.items():
            n, t0 = 0, time.perf_counter()
            stop = t0 + SLICE
            while True:
                op()
                op()
                n += 2
                t = time.perf_counter()
                if t >= stop:
                    break
            counts[name] += n
            spent[name] += t - t0
    out.append({k: counts[k] / spent[k] for k in ops})


def run(ops: dict, threads: int, seconds: float) -> dict:
    """Mean op/s per thread for each op."""
    start, out = threading.Barrier(threads), []
    ts = [threading.Thread(target=_alternate, args=(ops, seconds, start, out)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {k: sum(r[k] for r in out) / len(out) for k in ops}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--size", type=int, default=32, help="message size in bytes (default 32)")
    ap.add_argument("--record", action="store_true", help=f"append the results to {RESULTS}")
    args = ap.parse_args()

    key = SM2PrivateKey.generate()
    pub = key.public_key()
    msg = os.urandom(args.size)
    sig = key.sign(msg)
    raw_sign, raw_verify = raw_ops(key.private_bytes_pkcs8(), msg, sig)
    pub.verify(raw_sign(), msg)  # the baseline makes real, verifiable signatures
    raw_verify()
    ops = {
        "raw sign": raw_sign,
        "unica sign": lambda: key.sign(msg),
        "raw verify": raw_verify,
        "unica verify": lambda: pub.verify(sig, msg),
    }
    lines = [f"SM2 with SM3, signer ID {DEFAULT_ID.decode()}, {args.size}-byte message, "
             f"{args.seconds:.0f} s per run, raw/unica alternating in {SLICE * 1000:.0f} ms slices, "
             f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"]
    print(lines[0], flush=True)
    ok = True
    for threads in (1, 2):
        r = run(ops, threads, args.seconds)
        for what in ("sign", "verify"):
            raw, uni = r[f"raw {what}"], r[f"unica {what}"]
            ratio = uni / raw
            target = "   (target >= 0.90)" if what == "sign" else ""
            if what == "sign":
                ok &= ratio >= 0.9
            line = (f"{threads} thread(s) {what:6}: raw cffi {raw:7.0f}/s/thread   unica {uni:7.0f}/s/thread   "
                    f"ratio {ratio:.3f}{target}   unica total {uni * threads:.0f}/s")
            print(line, flush=True)
            lines.append(line)
    if args.record:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        cmd = "python bench/sm2_sign.py " + " ".join(sys.argv[1:])
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as f:
            f.write(f"# {cmd.strip()}  --  {now}, load average {load} (at the end), "
                    f"OpenSSL libcrypto {sm2._lib.OpenSSL_version_num():#x}\n")
            f.write("\n".join(lines) + "\n\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
