"""CRL generation at scale: unica's DER encoder beside cryptography's builder.

    python bench/crl_scale.py [--quick]

For 10^4, 10^5, 10^6 entries (random 128-bit serials, a third with keyCompromise, a third
with superseded, every tenth with an invalidity date), each measurement in a fresh
subprocess so peak memory (ru_maxrss) is per run:

- unica ``build_crl`` from rows already in memory (what a DB cursor hands over):
  build + sign + write, the issue's <= 3 s target at 10^6;
- unica streamed: rows produced by a generator inside the timed region (datetime objects
  built per row, as a cursor would), the end-to-end shape;
- cryptography ``add_revoked_certificate`` one by one (10^4, 10^5) and the whole-list
  constructor (10^4, 10^5);
- ``openssl crl -verify`` on the 10^6 CRL.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

NOW = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.timezone.utc)
R = x509.ReasonFlags
REASONS = [None, R.key_compromise, R.superseded]


def make_ca(tmp: Path):
    key_path, cert_path = tmp / "ca.key", tmp / "ca.pem"
    if key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        return key, x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CRL CA")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=900))
            .add_extension(x509.BasicConstraints(True, None), True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
            .add_extension(ski, False).sign(key, hashes.SHA256()))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def rows(n: int):
    """Generator of DB-like rows (serial, revoked_at, reason, invalidity_date)."""
    rb = secrets.randbits
    base = NOW - dt.timedelta(days=365)
    td = dt.timedelta
    for i in range(n):
        yield (rb(127) | (1 << 126), base + td(seconds=i * 29), REASONS[i % 3],
               base + td(seconds=i * 29 - 86400) if i % 10 == 0 else None)


def one(mode: str, n: int, tmp: Path) -> dict:
    key, cert = make_ca(tmp)
    out = tmp / f"{mode}-{n}.crl"
    if mode in ("unica", "unica-stream"):
        from unica.ca.crl import build_crl
        data = None if mode == "unica-stream" else list(rows(n))
        c0 = time.process_time()
        t0 = time.perf_counter()
        with open(out, "wb", buffering=1 << 20) as f:
            build_crl(issuer=cert, signing_key=key, crl_number=n, this_update=NOW, next_update=NOW + dt.timedelta(days=7),
                      entries=rows(n) if data is None else data, out=f)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
    else:
        data = list(rows(n))
        c0 = time.process_time()
        t0 = time.perf_counter()
        revoked = []
        for serial, at, reason, inv in data:
            b = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(at)
            if reason is not None:
                b = b.add_extension(x509.CRLReason(reason), False)
            if inv is not None:
                b = b.add_extension(x509.InvalidityDate(inv), False)
            revoked.append(b.build())
        exts = [x509.Extension(x509.AuthorityKeyIdentifier.oid, False,
                               x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())),
                x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(n))]
        if mode == "crypto-list":
            builder = x509.CertificateRevocationListBuilder(cert.subject, NOW, NOW + dt.timedelta(days=7), exts, revoked)
        else:  # add one by one
            builder = (x509.CertificateRevocationListBuilder().issuer_name(cert.subject).last_update(NOW)
                       .next_update(NOW + dt.timedelta(days=7)).add_extension(exts[0].value, False)
                       .add_extension(exts[1].value, False))
            for r in revoked:
                builder = builder.add_revoked_certificate(r)
        crl = builder.sign(key, hashes.SHA256())
        out.write_bytes(crl.public_bytes(serialization.Encoding.DER))
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
    return {"mode": mode, "n": n, "seconds": elapsed, "cpu": cpu, "bytes": out.stat().st_size,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "path": str(out)}


def run(mode: str, n: int, tmp: Path) -> dict:
    p = subprocess.run([sys.executable, __file__, "--one", mode, str(n), str(tmp)], capture_output=True, text=True,
                       timeout=600)
    if p.returncode:
        raise SystemExit(p.stderr)
    return json.loads(p.stdout)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        print(json.dumps(one(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))))
        return
    quick = "--quick" in sys.argv
    tmp = Path(tempfile.mkdtemp(prefix="unica-crl-bench-"))
    make_ca(tmp)
    sizes = [10**4, 10**5] if quick else [10**4, 10**5, 10**6]
    print(f"CRL generation, EC P-256 / SHA-256, one core each (python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at start)")
    print(f"{'entries':>9} {'method':<34} {'wall s':>8} {'CPU s':>7} {'peak MB':>8} {'MB DER':>7} {'CPU vs unica':>12}")
    results = {}
    plan = []
    for n in sizes:
        plan += [("unica", n), ("unica-stream", n)]
        if n <= 10**5:
            plan += [("crypto-list", n), ("crypto-add", n)]
    labels = {"unica": "unica build_crl (rows in memory)", "unica-stream": "unica build_crl (streamed rows)",
              "crypto-list": "cryptography whole-list builder", "crypto-add": "cryptography add_revoked one by one"}
    for mode, n in plan:
        r = results[(mode, n)] = run(mode, n, tmp)
        base = results[("unica", n)]["cpu"]
        print(f"{n:>9,} {labels[mode]:<34} {r['seconds']:>8.2f} {r['cpu']:>7.2f} {r['peak_mb']:>8.0f} {r['bytes'] / 1e6:>7.1f} "
              f"{r['cpu'] / base:>8.1f}x", flush=True)
    big = results[("unica", sizes[-1])]
    t0 = time.perf_counter()
    p = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", big["path"], "-CAfile", str(tmp / "ca.pem"),
                        "-noout", "-verify"], capture_output=True, text=True)
    ok = "verify OK" in p.stdout + p.stderr
    print(f"openssl crl -verify on the {sizes[-1]:,}-entry CRL: {'verify OK' if ok else 'FAILED'} "
          f"in {time.perf_counter() - t0:.2f} s")
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
