"""Crash safety (issue 7, item 3): processes killed with SIGKILL at random points.

A child process (multiprocessing 'forkserver', so each starts in milliseconds with the
libraries already imported) loops over issuance, revocation (with pre-signing), CRL
generation or OCSP pre-signing on a copy of a seeded database; after a random delay it is
killed with SIGKILL. Then recovery runs (the library's ``recover`` or ``unica recover
--older-than 0s``) and the database must be consistent (``rel.check_consistency``: no
pending row, every certificate's signature good and matching its recorded TBS, revocations
all-or-nothing with their audit entries, no pre-signed response contradicting a status,
CRL numbers unique and increasing, no temporary CRL file, the audit chain intact), the
published CRL file whole and signed, and the next operation must work.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import random
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import run_unica
from tests.reliability import rel, workers

# (kind, maximum delay before the kill in seconds, runs on SQLite, runs on PostgreSQL)
PLAN = [("issue", 1.2, 14, 3), ("revoke", 1.2, 14, 3), ("crl", 0.8, 14, 3), ("presign", 0.8, 5, 1)]
SEED_CERTS, SEED_REVOKED = 300, 100

OUTCOMES: Counter = Counter()
_CA_KEY: dict = {}


@pytest.fixture(scope="module")
def forkserver():
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.reliability.workers", "tests.reliability.rel", "unica.ca.issuance",
                                "unica.ca.revocation", "unica.ocsp.service", "unica.store", "sqlalchemy",
                                "psycopg"])
    return ctx


@pytest.fixture(scope="module")
def sqlite_seed(tmp_path_factory):
    d = tmp_path_factory.mktemp("crash-seed")
    rel.make_pki(f"sqlite:///{d / 'home' / 'unica.db'}", d / "home", certs=SEED_CERTS, revoked=SEED_REVOKED,
                 presign=True)
    return d / "home"


@pytest.fixture(scope="module")
def pg_seed(pg_url, tmp_path_factory):
    d = tmp_path_factory.mktemp("crash-pg-seed")
    url = rel.new_pg_database(pg_url)
    rel.make_pki(url, d / "home", certs=SEED_CERTS, revoked=SEED_REVOKED, presign=True)
    return url, d / "home"


def _kill_at_random(ctx, kind: str, url: str, home: Path, max_delay: float, rnd: random.Random) -> float:
    ready = ctx.Event()
    p = ctx.Process(target=workers.crash_loop, args=(kind, url, str(home), ready), daemon=True)
    p.start()
    assert ready.wait(60), f"{kind} worker did not start"
    delay = rnd.uniform(0.0, max_delay)
    time.sleep(delay)
    assert p.is_alive(), f"{kind} worker ended before the kill (exit code {p.exitcode})"
    p.kill()  # SIGKILL
    p.join(10)
    assert p.exitcode == -9
    return delay


def _check_after_kill(kind: str, url: str, home: Path, via_cli: bool) -> None:
    from unica.ca.issuance import IssuingCA
    from unica.ca.recovery import recover
    from unica.store import models as m
    from unica.store import open_store

    crl_dir = home / "crl"
    if via_cli:
        p = run_unica("recover", "--older-than", "0s", "--json", env={"UNICA_HOME": str(home), "UNICA_DB": url})
        assert p.returncode == 0, p.stderr
        report = json.loads(p.stdout)
        abandoned, removed, leases = report["abandoned_intents"], report["removed_files"], report["released_leases"]
    else:
        store = open_store(url)
        r = recover(store, older_than=__import__("datetime").timedelta(0), crl_dir=crl_dir)
        store.dispose()
        abandoned, removed, leases = r.abandoned, r.removed_files, r.released_leases
    OUTCOMES["abandoned intents rolled back"] += len(abandoned)
    OUTCOMES["temporary CRL files removed"] += len(removed)
    OUTCOMES["pre-signing leases of killed refreshers released"] += len(leases)
    OUTCOMES[f"runs with an abandoned intent ({kind})"] += bool(abandoned)
    store = open_store(url)
    try:
        summary = rel.check_consistency(store, crl_dirs=[crl_dir] if crl_dir.exists() else [])
        OUTCOMES["certificates checked"] += summary.certificates
        published = crl_dir / f"{rel.SUB}.crl"
        with store.read() as s:
            ca = s.query(m.CA).filter_by(name=rel.SUB).one()
            counter, ca_der = ca.crl_number, ca.cert_der
            recorded = s.query(m.CRL).filter_by(ca_id=ca.id).count()
        OUTCOMES["CRL numbers left as gaps"] += counter - recorded
        if published.exists():  # whole and signed (written to a temporary file, then renamed)
            from cryptography import x509

            crl = x509.load_der_x509_crl(published.read_bytes())
            assert crl.is_signature_valid(x509.load_der_x509_certificate(ca_der).public_key())
            number, _ = rel.parse_crl(published)
            assert number <= counter
        # the next run works: a refresher is not locked out by the killed one's lease
        if kind in ("revoke", "presign"):
            from unica.ocsp.service import presign

            with store.read() as s:
                signer_uri = s.query(m.CA).filter_by(name=rel.SUB).one().ocsp_signer_key_uri
            if signer_uri not in _CA_KEY:
                _CA_KEY[signer_uri] = rel.served(store)
            assert not any(r.skipped for r in presign(store, _CA_KEY[signer_uri])), "the dead lease blocks"
            rel.check_consistency(store, verify_sigs=False)
        with store.read() as s:  # every copy of a seed names the seed's key file: load (scrypt) it once
            uri = s.query(m.CA).filter_by(name=rel.SUB).one().key_uri
        if uri not in _CA_KEY:
            _CA_KEY[uri] = rel.load_ca_key(store, rel.SUB)
        ca = IssuingCA(store, rel.SUB, key=_CA_KEY[uri])
        ca.issue(rel.leaf_request("after-crash"), "tls-server", lint=False)
        with store.read() as s:
            assert s.query(m.Certificate).filter_by(status="pending").count() == 0
    finally:
        store.dispose()
    if via_cli:
        p = run_unica("audit", "verify", env={"UNICA_HOME": str(home), "UNICA_DB": url})
        assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("kind,max_delay,runs", [(k, d, n) for k, d, n, _ in PLAN])
def test_sigkill_sqlite(kind, max_delay, runs, forkserver, sqlite_seed, tmp_path):
    rnd = random.Random()
    for i in range(runs):
        home = tmp_path / f"run{i}"
        shutil.copytree(sqlite_seed, home)
        url = f"sqlite:///{home / 'unica.db'}"
        _kill_at_random(forkserver, kind, url, home, max_delay, rnd)
        OUTCOMES[f"kills ({kind}, sqlite)"] += 1
        _check_after_kill(kind, url, home, via_cli=i % 6 == 5)
        shutil.rmtree(home)


@pytest.mark.parametrize("kind,max_delay,runs", [(k, d, n) for k, d, _, n in PLAN])
def test_sigkill_postgres(kind, max_delay, runs, forkserver, pg_seed, pg_url, tmp_path):
    seed_url, seed_home = pg_seed
    rnd = random.Random()
    for i in range(runs):
        home = tmp_path / f"run{i}"
        shutil.copytree(seed_home, home)
        url = rel.new_pg_database(pg_url, template=rel.db_name(seed_url))
        _kill_at_random(forkserver, kind, url, home, max_delay, rnd)
        OUTCOMES[f"kills ({kind}, postgresql)"] += 1
        _check_after_kill(kind, url, home, via_cli=i == 0)


def test_crash_figures():
    """Print what the kills hit (runs last in this module)."""
    kills = sum(v for k, v in OUTCOMES.items() if k.startswith("kills"))
    print("\n[crash] " + ", ".join(f"{k}: {v}" for k, v in sorted(OUTCOMES.items())))
    if kills:
        assert kills >= 50
