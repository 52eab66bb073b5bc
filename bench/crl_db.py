"""CRL generation end to end from the database: N revoked certificates in SQLite (or
$UNICA_BENCH_DB), read, encoded, signed and written by ``unica.ca.revocation.generate_crl``.

Baseline in the same run: cryptography's CertificateRevocationListBuilder given the whole
list at once (the fast way to use it), on the same entries already in memory.

    python bench/crl_db.py [N]        # default 1,000,000

Prints: rows/s, seconds for the database read + build + sign + write, peak RSS, the
baseline's time, the ratio, and whether `openssl crl -verify` accepts the CRL.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import insert


def main(n: int) -> None:
    from unica.ca import revocation as _rev; generate_crl = _rev.generate_crl
    from unica.store import models as m, open_store

    work = Path(tempfile.mkdtemp(prefix="unica-bench-crl-"))
    url = os.environ.get("UNICA_BENCH_DB") or f"sqlite:///{work}/bench.db"
    store = open_store(url, create=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Bench CA {secrets.token_hex(4)}")])
    ca_cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
               .not_valid_after(now + dt.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
               .sign(key, hashes.SHA256()))
    with store.write() as s:
        ca = m.CA(name="bench", key_uri="file:unused", subject_der=name.public_bytes(), subject_text="CN=Bench",
                  cert_der=ca_cert.public_bytes(serialization.Encoding.DER))
        s.add(ca)
        s.flush()
        ca_id = ca.id
    reasons = ["keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged", None]
    t0 = time.perf_counter()
    batch = 50_000
    table = m.Certificate.__table__
    for start in range(0, n, batch):
        rows = [dict(ca_id=ca_id, serial=format(secrets.randbits(127) | (1 << 126), "x"), status="revoked",
                     subject_text="", subject_der=b"", sans=[], not_before=now - dt.timedelta(days=30),
                     not_after=now + dt.timedelta(days=365), profile="enterprise-sign", is_ca=False,
                     revoked_at=now - dt.timedelta(seconds=i), revocation_reason=reasons[i % 5],
                     created_at=now, updated_at=now)
                for i in range(start, min(n, start + batch))]
        with store.write() as s:
            s.execute(insert(table), rows)
    fill = time.perf_counter() - t0
    print(f"filled {n:,} revoked rows in {fill:.1f} s ({url.split(':')[0]})")

    out = work / "bench.crl"
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    c0 = time.process_time()
    [g] = generate_crl(store, "bench", key=key, out=out, now=now)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert g.entries == n, (g.entries, n)
    print(f"unica generate_crl: {n:,} entries, {g.size / 1e6:.1f} MB in {wall:.2f} s wall / {cpu:.2f} s CPU "
          f"({n / wall:,.0f} entries/s); peak RSS {rss / 1024:.0f} MB (before: {rss0 / 1024:.0f} MB)")

    # baseline: cryptography's builder with the whole list (entries already in memory)
    entries = [(secrets.randbits(127) | (1 << 126), now) for _ in range(n)]
    t0 = time.perf_counter()
    revoked = [x509.RevokedCertificateBuilder().serial_number(sn).revocation_date(t).build() for sn, t in entries]
    crl = (x509.CertificateRevocationListBuilder(issuer_name=name, last_update=now,
                                                 next_update=now + dt.timedelta(days=7),
                                                 revoked_certificates=revoked).sign(key, hashes.SHA256()))
    (work / "baseline.crl").write_bytes(crl.public_bytes(serialization.Encoding.DER))
    base = time.perf_counter() - t0
    print(f"cryptography builder (whole list, from memory, no reasons): {base:.2f} s")
    print(f"ratio: unica end-to-end from the database is {base / wall:.2f}x the builder's speed")

    ca_pem = work / "ca.pem"
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    t0 = time.perf_counter()
    r = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(out), "-CAfile", str(ca_pem), "-noout"],
                       capture_output=True, text=True)
    print(f"openssl crl -verify: {(r.stderr + r.stdout).strip()} ({time.perf_counter() - t0:.1f} s)")
    store.dispose()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
