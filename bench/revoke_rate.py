"""Revocations per second through the library (``unica.ca.revocation.revoke_many``).

Issues ``--n`` certificates (default 10,000) with the fast bulk issuance
(``IssuingCA.issue_many(lint=False)``, software P-256 CA key) into a fresh SQLite database (or
``--db URL``), then, per round, revokes all of them with ``revoke_many`` (batches of
``--batch``, one transaction, one many-row UPDATE and one audit entry each), and as the
baseline in the same run a raw SQLAlchemy Core ``UPDATE certificates SET status='revoked', ...
WHERE id IN (...)`` of the same rows in the same batches (no lookup, no checks, no audit).
Between rounds the rows are put back to ``valid`` (not timed). Also one ``revoke_by_spki``
round (every certificate shares the key of the bench CSRs). Medians of ``--rounds`` rounds.

    python bench/revoke_rate.py [--n 10000] [--batch 500] [--rounds 3] [--db sqlite|URL]

Target: revoke_many >= 1,000 revocations/s (absolute, wall clock).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def make_csrs(n: int) -> list[bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())  # one key: every certificate has the same SPKI
    out = []
    for i in range(n):
        name = f"host{i}.bench.example.cn"
        out.append((x509.CertificateSigningRequestBuilder()
                    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                    .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
                    .sign(key, hashes.SHA256())).public_bytes(serialization.Encoding.PEM))
    return out


def reset(store, ids: list[int]) -> None:
    from sqlalchemy import bindparam, update

    from unica.store import models as m

    t = m.Certificate.__table__
    with store.write() as s:
        for k in range(0, len(ids), 5000):
            s.execute(update(t).where(t.c.id.in_(bindparam("ids", expanding=True)))
                      .values(status="valid", revoked_at=None, revocation_reason=None, invalidity_date=None),
                      {"ids": ids[k:k + 5000]})


def raw_rate(store, ids: list[int], batch: int) -> float:
    """The baseline: a plain Core UPDATE of the same rows, one transaction per batch."""
    from sqlalchemy import bindparam, update

    from unica.store import models as m

    t = m.Certificate.__table__
    now = m.utcnow()
    stmt = (update(t).where(t.c.id.in_(bindparam("ids", expanding=True)))
            .values(status="revoked", revoked_at=now, revocation_reason="superseded", updated_at=now))
    t0 = time.perf_counter()
    for k in range(0, len(ids), batch):
        with store.write() as s:
            s.execute(stmt, {"ids": ids[k:k + batch]})
    return len(ids) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--db", default="sqlite", help="'sqlite' (a temp file) or a database URL")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="unica-revoke-bench-"))
    os.environ["UNICA_HOME"] = str(tmp / "home")
    os.environ["UNICA_PASSPHRASE"] = "bench-passphrase"
    os.environ.pop("UNICA_DB", None)
    try:
        from sqlalchemy import select

        from unica.ca.authority import CASettings, KeySpec, create_root
        from unica.ca.issuance import IssuingCA
        from unica.ca.revocation import revoke_by_spki, revoke_many
        from unica.config import write_default_config
        from unica.store import models as m
        from unica.store import open_store

        write_default_config(tmp / "home")
        store = open_store(None if args.db == "sqlite" else args.db, create=True)
        create_root(store, "soft", "C=CN,O=Bench,CN=Bench Soft", KeySpec(key_type="ec-p256"),
                    settings=CASettings(crl_url="http://crl.example.cn/b.crl"))
        ca = IssuingCA(store, "soft")
        t0 = time.perf_counter()
        csrs = make_csrs(args.n)
        serials = []
        for k in range(0, args.n, 1000):
            for r in ca.issue_many(csrs[k:k + 1000], "tls-server", requester="bench", lint=False):
                if isinstance(r, Exception):
                    raise r
                serials.append(r.serial_hex)
        print(f"set-up: {len(serials)} certificates issued with issue_many(lint=False) in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        t = m.Certificate.__table__
        with store.read() as s:
            ids = [i for (i,) in s.execute(select(t.c.id).where(t.c.is_ca.is_(False)).order_by(t.c.id))]
            spki = s.execute(select(t.c.spki_sha256).where(t.c.serial == serials[0])).scalar()
        raws, libs, spkis = [], [], []
        for _ in range(args.rounds):  # interleaved: the machine drifts
            reset(store, ids)
            raws.append(raw_rate(store, ids, args.batch))
            reset(store, ids)
            t0 = time.perf_counter()
            res = revoke_many(store, serials, ca="soft", reason="superseded", batch_size=args.batch)
            libs.append(len(serials) / (time.perf_counter() - t0))
            assert len(res.revoked) == len(serials) and not res.refused, (len(res.revoked), res.refused[:3])
            reset(store, ids)
            t0 = time.perf_counter()
            res = revoke_by_spki(store, spki, reason="keyCompromise", batch_size=args.batch)
            spkis.append(len(serials) / (time.perf_counter() - t0))
            assert len(res.revoked) == len(serials), len(res.revoked)
        med = statistics.median
        raw, lib, byspki = med(raws), med(libs), med(spkis)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"unica revocation rate, {len(serials)} certificates, batches of {args.batch}, medians of "
              f"{args.rounds} rounds, database {store!r}, load average {load:.2f}")
        print(f"  baseline: raw Core UPDATE ... WHERE id IN (batch), one transaction per batch: {raw:9.1f}/s")
        print(f"  revoke_many (lookup, checks, UPDATE, OCSP purge, audit):  {lib:9.1f}/s = {lib / raw:5.3f} x raw"
              f"   [target >= 1000/s: {'met' if lib >= 1000 else 'NOT met'}]")
        print(f"  revoke_by_spki (same, selected by the spki_sha256 index):  {byspki:9.1f}/s = {byspki / raw:5.3f} x raw"
              f"   [target >= 1000/s: {'met' if byspki >= 1000 else 'NOT met'}]")
        store.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
