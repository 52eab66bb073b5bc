"""Certificates issued per second, end to end (CSR bytes in -> certificate stored).

Runs on one core (``sched_setaffinity``). Cases: a software P-256 CA key and a SoftHSM2
P-256 CA key (a private SoftHSM2 token store in a temp dir), each with pkilint on and off,
beside the raw rate of cryptography's CertificateBuilder build+sign (same extensions,
software P-256 key) measured in the same run.

    python bench/issue_rate.py [--n 400] [--db sqlite|URL]

Targets: lint on >= 200/s; lint off >= 0.5 x raw build+sign.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PIN = "bench-pin-1"


def setup_env(tmp: Path) -> None:
    tok = tmp / "tokens"
    tok.mkdir()
    conf = tmp / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tok}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    os.environ["UNICA_PIN"] = PIN
    os.environ["UNICA_PASSPHRASE"] = "bench-passphrase"
    os.environ["UNICA_HOME"] = str(tmp / "home")
    os.environ.pop("UNICA_DB", None)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin", PIN,
                    "--so-pin", "bench-so-1"], check=True, capture_output=True)


def make_csrs(n: int) -> list[bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())  # one key, distinct names: we measure the CA, not keygen
    out = []
    for i in range(n):
        name = f"host{i}.bench.example.cn"
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
               .sign(key, hashes.SHA256()))
        out.append(csr.public_bytes(serialization.Encoding.PEM))
    return out


def raw_rate(n: int) -> float:
    """cryptography's CertificateBuilder: build + sign, nothing else (the baseline)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca = ec.generate_private_key(ec.SECP256R1())
    ee = ec.generate_private_key(ec.SECP256R1()).public_key()
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])
    ski = x509.SubjectKeyIdentifier.from_public_key(ca.public_key()).digest
    now = dt.datetime.now(dt.timezone.utc)
    t = time.perf_counter()
    for i in range(n):
        name = f"host{i}.bench.example.cn"
        (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
         .issuer_name(issuer).public_key(ee).serial_number(x509.random_serial_number())
         .not_valid_before(now).not_valid_after(now + dt.timedelta(days=397))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
         .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(ee), False)
         .add_extension(x509.AuthorityKeyIdentifier(ski, None, None), False)
         .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
         .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
             [x509.UniformResourceIdentifier("http://crl.example.cn/b.crl")], None, None, None)]), False)
         .add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
             x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier("http://ocsp.example.cn/"))]),
             False)
         .sign(ca, hashes.SHA256()))
    return n / (time.perf_counter() - t)


def issue_rate(ca, profile, csrs: list[bytes], lint: bool, batch: int) -> float:
    """One request per call (``batch`` 1: two transactions per certificate), or
    ``issue_many`` over batches (two transactions per batch)."""
    t = time.perf_counter()
    if batch == 1:
        for csr in csrs:
            ca.issue(csr, profile, requester="bench", lint=lint)
    else:
        for k in range(0, len(csrs), batch):
            for r in ca.issue_many(csrs[k:k + batch], profile, requester="bench", lint=lint):
                assert not isinstance(r, Exception), r
    return len(csrs) / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="certificates per case (default 400)")
    ap.add_argument("--batch", type=int, default=100, help="batch size for the issue_many cases (default 100)")
    ap.add_argument("--db", default=None, help="database URL (default: SQLite in a temp UNICA_HOME)")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    tmp = Path(tempfile.mkdtemp(prefix="unica-bench-"))
    try:
        setup_env(tmp)
        from unica.ca.authority import CASettings, KeySpec, create_root
        from unica.ca.issuance import IssuingCA
        from unica.config import write_default_config
        from unica.policies import get_profile
        from unica.store import open_store

        write_default_config(tmp / "home")
        store = open_store(args.db, create=True)
        settings = CASettings(crl_url="http://crl.example.cn/b.crl", ocsp_url="http://ocsp.example.cn/")
        create_root(store, "soft", "C=CN,O=Bench,CN=Bench Soft", KeySpec(key_type="ec-p256"), settings=settings)
        create_root(store, "hsm", "C=CN,O=Bench,CN=Bench HSM", KeySpec(key_type="ec-p256", token="bench"),
                    settings=settings)
        profile = get_profile("tls-server")
        n = args.n
        csrs = make_csrs(n)
        raw = raw_rate(max(n, 1000))
        results = {}
        for ca_name in ("soft", "hsm"):
            ca = IssuingCA(store, ca_name)
            ca.issue(csrs[0], profile, lint=True)  # warm-up: key load, pkilint import, DB connection
            for batch in (1, args.batch):
                for lint in (True, False):
                    results[(ca_name, batch, lint)] = issue_rate(ca, profile, csrs, lint, batch)
        raw2 = raw_rate(max(n, 1000))
        raw = max(raw, raw2)
        print(f"unica issue rate, one core, {n} certificates per case, database {store!r}")
        print(f"  baseline: cryptography CertificateBuilder build+sign (P-256, same extensions): {raw:8.1f}/s")
        for (ca_name, batch, lint), r in results.items():
            key = "software P-256" if ca_name == "soft" else "SoftHSM2 P-256"
            mode = "issue()        " if batch == 1 else f"issue_many({batch:<3d})"
            target = "target >= 200/s" if lint else f"target >= {0.5 * raw:.0f}/s (0.5 x raw)"
            ok = (r >= 200) if lint else (r >= 0.5 * raw)
            print(f"  {key:15s} {mode} lint {'on ' if lint else 'off'}: {r:8.1f}/s  = {r / raw:5.3f} x raw   "
                  f"[{target}: {'met' if ok else 'NOT met'}]")
        store.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
