"""Certificates issued per second, end to end (CSR bytes in -> certificate stored).

Runs on one core (``sched_setaffinity``). Cases: a software P-256 CA key and a SoftHSM2
P-256 CA key (a private SoftHSM2 token store in a temp dir), each one request at a time
(``issue``) and in batches (``issue_many``, as ``unica issue-batch``), with pkilint on and
off, beside the raw rate of cryptography's CertificateBuilder build+sign (same extensions,
software P-256 key) measured in the same run, interleaved with the cases; for the SoftHSM2
key also the same builder signing with that token key (the same-key baseline). Every case
runs ``--rounds`` times; medians are reported.

    python bench/issue_rate.py [--n 1000] [--batch 500] [--rounds 3] [--db sqlite|URL]

Targets: lint on >= 200/s; lint off >= 0.5 x raw build+sign.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
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


def _clock():
    return time.perf_counter(), time.process_time()


def _rates(n: int, start) -> tuple[float, float]:
    """(wall rate, CPU-time rate): on a shared machine the second is what one core can do."""
    w, c = _clock()
    return n / (w - start[0]), n / max(c - start[1], 1e-9)


def raw_rate(n: int, ca=None) -> tuple[float, float]:
    """cryptography's CertificateBuilder: build + sign, nothing else (the baseline); ``ca``:
    the signing key (default a new software P-256 key; a token key gives the same-key baseline)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca = ca or ec.generate_private_key(ec.SECP256R1())
    ee = ec.generate_private_key(ec.SECP256R1()).public_key()
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])
    ski = x509.SubjectKeyIdentifier.from_public_key(ca.public_key()).digest
    now = dt.datetime.now(dt.timezone.utc)
    t = _clock()
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
    return _rates(n, t)


def issue_rate(ca, profile, csrs: list[bytes], lint: bool, batch: int) -> tuple[float, float]:
    """One request per call (``batch`` 1: two transactions per certificate), or
    ``issue_many`` over batches (two transactions per batch)."""
    t = _clock()
    if batch == 1:
        for csr in csrs:
            ca.issue(csr, profile, requester="bench", lint=lint)
    else:
        for k in range(0, len(csrs), batch):
            for r in ca.issue_many(csrs[k:k + batch], profile, requester="bench", lint=lint):
                assert not isinstance(r, Exception), r
    return _rates(len(csrs), t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="certificates per case (default 1000)")
    ap.add_argument("--batch", type=int, default=500, help="batch size for the issue_many cases (default 500)")
    ap.add_argument("--db", default=None, help="database URL (default: SQLite in a temp UNICA_HOME)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of every case; medians are reported (default 3)")
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
        raws = []
        hsm_raws = []
        runs: dict[tuple, list] = {}
        cas = {}
        for ca_name in ("soft", "hsm"):
            cas[ca_name] = ca = IssuingCA(store, ca_name)
            ca.issue(csrs[0], profile, lint=True)  # warm-up: key load, pkilint import, DB connection
        for _ in range(args.rounds):  # the machine drifts: every case once per round, medians reported
            for ca_name, ca in cas.items():
                for batch in (1, args.batch):
                    for lint in (True, False):
                        raws.append(raw_rate(1000))  # the baseline, interleaved with the cases
                        if ca_name == "hsm":
                            hsm_raws.append(raw_rate(500, ca.key))  # the same-key baseline: builder + token key
                        runs.setdefault((ca_name, batch, lint), []).append(issue_rate(ca, profile, csrs, lint, batch))
        raws.append(raw_rate(1000))
        med = statistics.median
        raw_wall, raw_cpu = med(r[0] for r in raws), med(r[1] for r in raws)
        hsm_cpu = med(r[1] for r in hsm_raws)
        results = {k: (med(r[0] for r in v), med(r[1] for r in v)) for k, v in runs.items()}
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"unica issue rate, one core, {n} certificates per case, medians of {args.rounds} rounds, "
              f"database {store!r}, load average {load:.2f}")
        print("  wall: certificates per elapsed second; cpu: per second of this process's CPU time "
              "(what one core does when the machine is shared)")
        print(f"  baseline: cryptography CertificateBuilder build+sign (P-256, same extensions), median of "
              f"{len(raws)} runs: wall {raw_wall:8.1f}/s   cpu {raw_cpu:8.1f}/s")
        print(f"  same-key baseline for SoftHSM2: the same builder signing with the SoftHSM2 key, median of "
              f"{len(hsm_raws)} runs: cpu {hsm_cpu:8.1f}/s")
        for (ca_name, batch, lint), (rw, rc) in results.items():
            key = "software P-256" if ca_name == "soft" else "SoftHSM2 P-256"
            mode = "issue()        " if batch == 1 else f"issue_many({batch:<3d})"
            if lint:
                verdict = f"target >= 200/s: {'met' if rc >= 200 else 'NOT met'} (cpu)"
            else:
                verdict = f"target >= 0.5 x raw: {'met' if rc >= 0.5 * raw_cpu else 'NOT met'} (cpu)"
            same = f" = {rc / hsm_cpu:5.3f} x same-key raw" if ca_name == "hsm" else ""
            print(f"  {key:15s} {mode} lint {'on ' if lint else 'off'}: wall {rw:7.1f}/s = {rw / raw_wall:5.3f} x raw"
                  f" | cpu {rc:7.1f}/s = {rc / raw_cpu:5.3f} x raw{same}   [{verdict}]")
        store.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
