"""Verifications per second, one core: a detached CMS (CAdES-B-B) P-256 signature, 2-level chain
(root -> issuing CA -> signer), revocation from a warm cache (CRLs of both CAs, hard-fail).

Beside it, in the same run: pyHanko's own CMS validation of the same signature
(``async_validate_cms_signature`` with a ValidationContext holding the same trust and CRLs) and
the raw ECDSA P-256 verify rate of cryptography.

    python bench/verify_cms.py [--seconds 3]
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asn1crypto import cms, crl as acrl  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from tests.verify.pki import PKI, make_crl, pyhanko_sign  # noqa: E402
from unica.verify import OFFLINE_HARD_FAIL, Verifier  # noqa: E402


def rate(fn, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(50):
            fn()
        n += 50
        t = time.perf_counter()
        if t >= end:
            return n / (t - t0)


async def arate(fn, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(5):
            await fn()
        n += 5
        t = time.perf_counter()
        if t >= end:
            return n / (t - t0)


def main() -> None:
    seconds = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 3.0
    warnings.simplefilter("ignore")
    pki = PKI()
    # a stream of distinct signatures (distinct content and signing times) from one signer
    docs = [b"declaration %04d " % i * 60 for i in range(64)]  # ~1 KiB each
    sigs = [pyhanko_sign(pki, pki.signer, d, detached=True, tsa=False) for d in docs]
    stream = list(zip(sigs, docs))
    data, sig = docs[0], sigs[0]
    crls = [make_crl(pki.inter), make_crl(pki.root)]

    # unica: a Verifier held across calls (trust + caches)
    v = Verifier([pki.root.cert], revocation=OFFLINE_HARD_FAIL, crls=crls)
    first = v.verify_cms(sig, data)
    assert first.passed, first.messages
    assert first.certificate.revocation, "revocation must have been checked"
    it = iter(())

    def one():
        nonlocal it
        try:
            s, d = next(it)
        except StopIteration:
            it = iter(stream)
            s, d = next(it)
        return v.verify_cms(s, d)

    unica_fn = one
    assert v.verify_cms(sig, data).passed
    assert not v.verify_cms(sig, data + b"x").passed

    # pyHanko: its own CMS validation with a ValidationContext (same trust, same CRLs)
    from pyhanko.sign.validation import async_validate_cms_signature
    from pyhanko_certvalidator import ValidationContext

    vc = ValidationContext(
        trust_roots=[pki.root.asn1_cert], other_certs=[pki.inter.asn1_cert],
        crls=[acrl.CertificateList.load(c.public_bytes(serialization.Encoding.DER)) for c in crls],
        revocation_mode="hard-fail", allow_fetching=False)

    pstream = [(cms.ContentInfo.load(s)["content"], hashlib.sha256(d).digest()) for s, d in stream]
    pos = 0

    async def ph():
        nonlocal pos
        sd_i, dg = pstream[pos % len(pstream)]
        pos += 1
        return await async_validate_cms_signature(sd_i, raw_digest=dg, validation_context=vc)

    st = asyncio.run(ph())
    assert st.intact and st.valid and st.trusted, st
    pyhanko_fn = ph

    # raw ECDSA P-256 verify (cryptography / OpenSSL)
    key = ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key()
    s = key.sign(data, ec.ECDSA(hashes.SHA256()))
    ecdsa_fn = lambda: pub.verify(s, data, ec.ECDSA(hashes.SHA256()))  # noqa: E731

    # alternate short rounds of the three and take the median of each: the machine is shared,
    # and interleaving keeps load changes from skewing the ratios
    rounds = 5
    per = seconds / rounds
    u, p, e = [], [], []
    loop = asyncio.new_event_loop()
    for _ in range(rounds):
        u.append(rate(unica_fn, per))
        p.append(loop.run_until_complete(arate(pyhanko_fn, per)))
        e.append(rate(ecdsa_fn, per))
    loop.close()
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    unica_rate, pyhanko_rate, ecdsa_rate = med(u), med(p), med(e)

    print(f"{len(stream)} distinct signatures cycled; median of {rounds} interleaved rounds of {per:.1f} s each")
    print(f"unica Verifier.verify_cms       {unica_rate:10.0f} verifications/s")
    print(f"pyHanko validate_cms_signature  {pyhanko_rate:10.0f} verifications/s")
    print(f"raw ECDSA P-256 verify          {ecdsa_rate:10.0f} verifications/s")
    print(f"unica / pyHanko   = {unica_rate / pyhanko_rate:6.1f} x   (target >= 10)")
    print(f"unica / raw ECDSA = {unica_rate / ecdsa_rate:6.2f} x   (target >= 0.3)")


if __name__ == "__main__":
    main()
