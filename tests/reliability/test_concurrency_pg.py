"""Many nodes, one PostgreSQL database (issue 7, item 2).

Eight processes (multiprocessing 'spawn') issue and revoke at the same time against one
database, two of them also generating CRLs and two pre-signing OCSP responses. Afterwards:
no duplicate or lost certificate, every signature good, every revocation in every CRL whose
number was reserved after it and in OCSP, CRL numbers strictly increasing (table, audit
order, files), pre-signed responses never contradicting a status and signed once per period
with several refreshers, and an unbroken audit chain (`unica audit verify`).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

from tests.conftest import run_unica
from tests.reliability import rel, workers

NODES = 8
CERTS_PER_NODE = 250  # 8 x 250 = 2,000 certificates
LINTED_PER_NODE = 3


def test_eight_nodes_issue_revoke_crl_presign_on_one_postgres(pg_url, tmp_path):
    from sqlalchemy import select

    from unica.ocsp.dbsource import DBStatusSource, drop_responses
    from unica.store import models as m
    from unica.store import open_store

    url = rel.new_pg_database(pg_url)
    home = tmp_path / "home"
    rel.make_pki(url, home)
    crl_dir = tmp_path / "crls"
    (crl_dir / "published").mkdir(parents=True)
    ctx = mp.get_context("spawn")
    jobs = [{"wid": w, "url": url, "home": str(home), "certs": CERTS_PER_NODE, "seed": 1000 + w,
             "lint": LINTED_PER_NODE, "crl": w in (0, 1), "presign": w in (2, 3), "crl_dir": str(crl_dir)}
            for w in range(NODES)]
    t0 = time.monotonic()
    with ctx.Pool(NODES) as pool:
        results = pool.map(workers.storm, jobs)
    storm_s = time.monotonic() - t0
    print(f"\n[concurrency] storm {storm_s:.1f}s")

    store = open_store(url)
    issued = [s for r in results for s in r["issued"]]
    revoked = [s for r in results for s in r["revoked"]]
    assert len(issued) == NODES * CERTS_PER_NODE >= 2000
    assert len(set(issued)) == len(issued), "a serial was handed out twice"
    assert len(set(revoked)) == len(revoked), "a certificate was revoked twice"
    assert sum(r["linted"] for r in results) == NODES * LINTED_PER_NODE

    # no lost or extra row: exactly what the nodes report, plus the root, the sub and the signer
    with store.read() as s:
        rows = {r.serial: r for r in s.execute(select(m.Certificate.serial, m.Certificate.status,
                                                      m.Certificate.requester)).all()}
    leaves = {k: v for k, v in rows.items() if (v.requester or "").startswith("node")}
    assert set(leaves) == set(issued) and len(rows) == len(issued) + 3
    assert {k for k, v in leaves.items() if v.status == "revoked"} == set(revoked)
    assert all(v.status == "valid" for k, v in leaves.items() if k not in set(revoked))

    # CRL numbers: strictly increasing in the order they were reserved (the audit chain's order)
    with store.read() as s:
        entries = s.execute(select(m.AuditEntry.id, m.AuditEntry.event, m.AuditEntry.target)
                            .where(m.AuditEntry.event.in_(("crl.number-reserved", "certificate.revoked")))
                            .order_by(m.AuditEntry.id)).all()
        table = s.execute(select(m.CRL.number, m.CRL.path).join(m.CA, m.CA.id == m.CRL.ca_id)
                          .where(m.CA.name == rel.SUB).order_by(m.CRL.id)).all()
        counter = s.execute(select(m.CA.crl_number).where(m.CA.name == rel.SUB)).scalar_one()
    reserved = [int(e.target) for e in entries if e.event == "crl.number-reserved"]
    assert reserved == sorted(reserved) and len(set(reserved)) == len(reserved)
    numbers = sorted(n for n, _ in table)
    assert len(set(numbers)) == len(numbers) and numbers[-1] == counter == reserved[-1]
    own = [c for r in results for c in r["crls"]]
    assert len(own) >= 4, "the CRL nodes made too few CRLs to test anything"

    # every revocation is in every CRL whose number was reserved after it committed
    reserved_at = {int(e.target): e.id for e in entries if e.event == "crl.number-reserved"}
    revoked_at = [(e.id, int(e.target, 16)) for e in entries if e.event == "certificate.revoked"]
    for number, path in own:
        file_number, listed = rel.parse_crl(path)
        assert file_number == number
        must = {serial for aid, serial in revoked_at if aid < reserved_at[number]}
        missing = must - listed
        assert not missing, f"CRL {number}: {len(missing)} earlier revocations missing"
    # the published file holds the highest number ever recorded for it
    published = [n for n, p in table if p and Path(p).parent == crl_dir / "published"]
    file_number, _ = rel.parse_crl(crl_dir / "published" / f"{rel.SUB}.crl")
    assert file_number == max(published), f"the published CRL went back from {max(published)} to {file_number}"

    # the next CRL after the storm lists every revocation, and OCSP status agrees
    from unica.ca.revocation import generate_crl

    final = generate_crl(store, rel.SUB, key=rel.load_ca_key(store, rel.SUB), out=tmp_path / "final.crl")[0]
    number, listed = rel.parse_crl(final.path)
    assert number == counter + 1 and listed == {int(x, 16) for x in revoked}
    src = DBStatusSource(store)
    for serial in issued:
        st = src.status(rel.SUB, int(serial, 16))
        assert st.kind == ("revoked" if serial in set(revoked) else "good"), serial
    assert src.status(rel.SUB, 0x1234567).kind == "unknown"

    # pre-signing during the storm: no response contradicts a status (check below), and no
    # certificate signed more than once per change (first issue, then after its revocation)
    with store.read() as s:
        counts = [e.details["responses"] for e in s.scalars(select(m.AuditEntry).where(
            m.AuditEntry.event == "ocsp.presigned")).all()]
    during = sum(counts)
    assert 0 < during <= len(issued) + 1 + len(revoked), (during, len(issued), len(revoked))
    summary = rel.check_consistency(store, crl_dirs=[crl_dir, crl_dir / "published"])

    # refreshers started together sign each due response exactly once
    drop_responses(store, rel.SUB)
    barrier, queue = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=workers.presign_once, args=({"url": url, "home": str(home)}, barrier, queue))
             for _ in range(4)]
    for p in procs:
        p.start()
    runs = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    signed = sum(r["signed"] for run in runs for r in run)
    assert signed == len(issued) + 1, runs  # the leaves and the OCSP signer's own certificate
    with store.read() as s:
        produced = s.execute(select(m.OCSPResponse.produced_at)).scalars().all()
    assert len(produced) == len(issued) + 1

    p = run_unica("audit", "verify", "--json", env={"UNICA_DB": url, "UNICA_HOME": str(home)})
    assert p.returncode == 0 and json.loads(p.stdout)["ok"], p.stdout + p.stderr
    store.dispose()
    superseded = sum(1 for _, p in table if p is None)
    print(f"\n[concurrency] {len(issued)} certificates, {len(revoked)} revocations, {len(table)} CRLs "
          f"({superseded} overtaken before publication, not written), "
          f"{during} OCSP responses pre-signed during the storm by 2 refreshers, storm {storm_s:.1f}s, "
          f"{summary.audit_entries} audit entries; final refresh by 4 refreshers: {signed} signed once each")
