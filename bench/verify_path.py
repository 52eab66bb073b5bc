"""Cold path validation: a 3-level chain (root -> issuing CA -> leaf) with CRLs of both CAs,
hard-fail revocation, nothing cached: each validation starts from DER bytes with a new
verifier. Beside it, in the same run and on the same chains, pyhanko-certvalidator doing the
same job the way an integrator would (a new ValidationContext with the same trust and CRLs,
``revocation_mode="require"``, then ``CertificateValidator.async_validate_path``).

Both sides must agree on every chain (a revoked leaf is among them); the ratio is
unica / pyhanko-certvalidator in validations per second, target >= 1.

    python bench/verify_path.py [--seconds 6] [--chains 32]
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import serialization  # noqa: E402

from tests.verify.pki import NOW, PKI, make_crl  # noqa: E402

DER = serialization.Encoding.DER


def build(n: int):
    """``n`` independent 3-level PKIs (each its own root, CA, leaf and two CRLs), as DER."""
    out = []
    for i in range(n):
        pki = PKI()
        revoked = i % 8 == 7  # one chain in eight has its leaf revoked
        inter_crl = make_crl(pki.inter, [(pki.signer.cert.serial_number, NOW - dt.timedelta(days=1))] if revoked else [])
        out.append(dict(
            root=pki.root.cert.public_bytes(DER), inter=pki.inter.cert.public_bytes(DER),
            leaf=pki.signer.cert.public_bytes(DER),
            crls=[make_crl(pki.root).public_bytes(DER), inter_crl.public_bytes(DER)], revoked=revoked))
    return out


def unica_one(c) -> bool:
    from unica.verify import OFFLINE_HARD_FAIL, validate_certificate

    rep = validate_certificate(c["leaf"], trust=[c["root"]], intermediates=[c["inter"]],
                               revocation=OFFLINE_HARD_FAIL, crls=c["crls"])
    return rep.passed


async def pyhanko_one(c) -> bool:
    from asn1crypto import crl as acrl, x509 as ax
    from pyhanko_certvalidator import CertificateValidator, ValidationContext
    from pyhanko_certvalidator.errors import PathValidationError

    ctx = ValidationContext(
        trust_roots=[ax.Certificate.load(c["root"])], other_certs=[ax.Certificate.load(c["inter"])],
        crls=[acrl.CertificateList.load(x) for x in c["crls"]], revocation_mode="require", allow_fetching=False)
    try:
        await CertificateValidator(ax.Certificate.load(c["leaf"]), validation_context=ctx).async_validate_path()
        return True
    except PathValidationError:
        return False


def main() -> None:
    seconds = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 6.0
    n = int(sys.argv[sys.argv.index("--chains") + 1]) if "--chains" in sys.argv else 32
    warnings.simplefilter("ignore")
    chains = build(n)
    loop = asyncio.new_event_loop()
    for c in chains:  # the two must agree, chain by chain
        u, p = unica_one(c), loop.run_until_complete(pyhanko_one(c))
        assert u == p == (not c["revoked"]), (u, p, c["revoked"])

    def unica_rate(per):
        k, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < per:
            unica_one(chains[k % n])
            k += 1
        return k / (time.perf_counter() - t0)

    def pyhanko_rate(per):
        async def go():
            k, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < per:
                await pyhanko_one(chains[k % n])
                k += 1
            return k / (time.perf_counter() - t0)
        return loop.run_until_complete(go())

    rounds = 5
    per = seconds / rounds / 2
    us, ps = [], []
    for _ in range(rounds):  # interleaved short rounds: the machine is shared
        us.append(unica_rate(per))
        ps.append(pyhanko_rate(per))
    loop.close()
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    u, p = med(us), med(ps)
    print(f"{n} chains (root -> CA -> leaf, 2 CRLs, 1 in 8 revoked), cold; median of {rounds} interleaved rounds")
    print(f"unica validate_certificate          {u:8.0f} validations/s")
    print(f"pyhanko-certvalidator validate_path  {p:8.0f} validations/s")
    print(f"unica / pyhanko-certvalidator = {u / p:5.2f} x   (target >= 1)")


if __name__ == "__main__":
    main()
