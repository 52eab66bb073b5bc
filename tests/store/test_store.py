"""The store on SQLite and PostgreSQL: migrations, transactions, constraints, the audit chain."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from unica.errors import StoreError
from unica.store import GENESIS_HASH, audit_entry_hash, models as m, open_store


def _empty_db_url(backend: str, request, tmp_path) -> str:
    """A new SQLite file, or the throwaway PostgreSQL cluster with everything dropped."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/unica.db"
    url = request.getfixturevalue("pg_url")
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    eng.dispose()
    return url


@pytest.fixture(params=["sqlite", "pg"])
def store(request, tmp_path):
    s = open_store(_empty_db_url(request.param, request, tmp_path), create=True)
    yield s
    s.dispose()


def _ca(name="root") -> m.CA:
    return m.CA(name=name, key_uri="file:/k.pem", subject_der=b"0", subject_text=f"CN={name}")


def _cert(ca_id: int, serial: int) -> m.Certificate:
    now = m.utcnow()
    return m.Certificate(ca_id=ca_id, serial=m.serial_hex(serial), not_before=now,
                         not_after=now + dt.timedelta(days=1), profile="tls-server")


def test_open_missing_database_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="unica init"):
        open_store(f"sqlite:///{tmp_path}/absent.db")


def test_bad_url_and_unreachable_server_are_store_or_config_errors(tmp_path):
    from unica.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        open_store("mysql://x@127.0.0.1/none")
    with pytest.raises(StoreError):
        open_store("postgresql+psycopg://nobody@127.0.0.1:1/none")


def test_datetimes_round_trip_timezone_aware(store):
    with store.write() as s:
        ca = _ca()
        s.add(ca)
        s.flush()
        s.add(_cert(ca.id, 0xABC))
    with store.read() as s:
        c = s.scalars(select(m.Certificate)).one()
        assert c.not_before.tzinfo is not None
        assert c.not_after - c.not_before == dt.timedelta(days=1)
        assert c.serial == "abc" and c.serial_number == 0xABC


def test_naive_datetimes_are_refused(store):
    with pytest.raises(Exception, match="naive"):
        with store.write() as s:
            ca = _ca()
            s.add(ca)
            s.flush()
            c = _cert(ca.id, 1)
            c.not_before = dt.datetime(2026, 1, 1)
            s.add(c)
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(m.CA)) == 0


def test_serial_is_unique_per_issuer_and_transaction_rolls_back(store):
    with store.write() as s:
        a, b = _ca("a"), _ca("b")
        s.add_all([a, b])
        s.flush()
        s.add_all([_cert(a.id, 7), _cert(b.id, 7)])  # same serial, different issuers: fine
    with pytest.raises(IntegrityError):
        with store.write() as s:
            store.audit(s, "certificate.issued", ca="a", target="7")
            s.add(_cert(1, 7))
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(m.Certificate)) == 2
        assert s.scalar(select(func.count()).select_from(m.AuditEntry)) == 0  # rolled back with it


def test_audit_chain_links_and_hashes(store):
    for i in range(5):
        with store.write() as s:
            store.audit(s, "test.event", ca="root", target=str(i), details={"n": i})
    with store.read() as s:
        entries = s.scalars(select(m.AuditEntry).order_by(m.AuditEntry.id)).all()
    assert [e.id for e in entries] == [1, 2, 3, 4, 5]
    prev = GENESIS_HASH
    for e in entries:
        assert e.prev_hash == prev
        assert e.hash == audit_entry_hash(prev, e.id, e.at, e.event, e.actor, e.ca_name, e.target, e.details)
        prev = e.hash


def test_several_appends_in_one_transaction_chain_like_separate_ones(store):
    """A second append in one transaction takes the head its first moved (not read again): the
    chain stays whole across appends in one transaction (ORM session and plain connection), a
    transaction rolled back after its appends, and an append inside a savepoint rolled back."""
    from unica.store.audit import verify_audit
    from unica.store.db import append_audit

    with store.write() as s:
        for i in range(3):
            store.audit(s, "several", details={"i": i})
    with store.write_connection() as c:
        append_audit(c, "several.core", details={"i": 3})
        append_audit(c, "several.core", details={"i": 4})
    with pytest.raises(RuntimeError):
        with store.write() as s:
            store.audit(s, "rolled.back")
            raise RuntimeError("roll back")
    with store.write() as s:  # the same pooled connection, a new transaction: the head is read again
        store.audit(s, "after.rollback")
        try:
            with s.begin_nested():
                store.audit(s, "in.savepoint")
                raise RuntimeError("roll the savepoint back")
        except RuntimeError:
            pass
        store.audit(s, "after.savepoint")
    with store.write() as s:
        store.audit(s, "last")
    with store.read() as s:
        entries = s.scalars(select(m.AuditEntry).order_by(m.AuditEntry.id)).all()
    assert [e.event for e in entries] == ["several"] * 3 + ["several.core"] * 2 + [
        "after.rollback", "after.savepoint", "last"]
    assert [e.id for e in entries] == list(range(1, 9))
    report = verify_audit(store)
    assert report.ok and report.entries == 8, report.to_dict()


def test_audit_refuses_secret_fields(store):
    with pytest.raises(ValueError, match="secrets"):
        with store.write() as s:
            store.audit(s, "token.login", details={"user_pin": "1234"})


def test_concurrent_audit_appends_never_fork_the_chain(store):
    errors = []

    def work():
        try:
            for i in range(10):
                with store.write() as s:
                    store.audit(s, "concurrent", details={"i": i})
        except Exception as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    with store.read() as s:
        entries = s.scalars(select(m.AuditEntry).order_by(m.AuditEntry.id)).all()
    assert len(entries) == 40
    for prev, cur in zip(entries, entries[1:]):
        assert cur.prev_hash == prev.hash


def test_bulk_rows_are_stored_exactly_as_core_stores_them(store):
    """unica.store.bulk (driver-level executemany, the bulk-issuance path) writes the same
    stored values as a Core INSERT/UPDATE: timestamps (whole seconds and not), JSON, bytes."""
    from sqlalchemy import insert, text, update

    from unica.store.bulk import insert_many, update_many

    t = m.Certificate.__table__
    whole = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.timezone.utc)
    frac = dt.datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    cols = ("ca_id", "serial", "status", "subject_text", "subject_der", "sans", "not_before", "not_after",
            "profile", "is_ca", "tbs_der", "spki_sha256", "requester", "created_at", "updated_at")
    with store.write() as s:
        s.add(_ca())
        s.flush()
        ca_id = s.execute(select(m.CA.id)).scalar_one()
    values = lambda serial: (ca_id, serial, "pending", "CN=示例", b"\x30\x00", ["dns:a.example", "ip:192.0.2.1"],  # noqa: E731
                             whole, frac, "tls-server", False, b"\x00\x01tbs", "ab" * 32, None, frac, whole)
    with store.write() as s:
        s.execute(insert(t), [dict(zip(cols, values("c0")))])
        assert insert_many(s.connection(), t, cols, [values("b0"), values("b1")]) in (2, -1)
    with store.write() as s:
        s.execute(update(t).where(t.c.serial == "c0", t.c.status == "pending")
                  .values(der=b"\x30\x01", fingerprint_sha256="f0", status="valid", updated_at=frac))
        n = update_many(s.connection(), t, ("der", "fingerprint_sha256", "status", "updated_at"), ("ca_id", "serial"),
                        [(b"\x30\x01", "f1", "valid", frac, ca_id, "b0"), (b"\x30\x01", "f2", "valid", frac, ca_id, "zz")],
                        where="status = 'pending'")
        assert n in (1, -1)  # "zz" matches nothing
    raw = "SELECT serial, status, subject_text, subject_der, sans, not_before, not_after, created_at, updated_at, " \
          "der, tbs_der, is_ca FROM certificates ORDER BY serial"
    with store.read() as s:
        rows = {r[0]: tuple(bytes(v) if isinstance(v, memoryview) else v for v in r[1:])
                for r in s.execute(text(raw))}
    assert rows["b0"] == rows["c0"]  # the stored forms, as the database holds them
    assert rows["b1"][0] == "pending" and rows["b1"][1:7] == rows["c0"][1:7]
    with store.read() as s:
        got = s.execute(select(m.Certificate).where(m.Certificate.serial == "b0")).scalar_one()
    assert got.not_before == whole and got.not_after == frac and got.sans == ["dns:a.example", "ip:192.0.2.1"]


@pytest.mark.parametrize("backend", ["sqlite", "pg"])
def test_migration_0005_keeps_rows_and_foreign_keys(backend, request, tmp_path):
    """0005 rebuilds the certificates table on SQLite (copy, drop, rename) with OCSP
    responses pointing at it: every row and reference survives, and the fingerprint is no
    longer indexed (nor enforced unique: the DER's issuer and serial are)."""
    from alembic import command
    from sqlalchemy import text

    from unica.store.db import _alembic_config, _make_engine

    url = _empty_db_url(backend, request, tmp_path)
    engine = _make_engine(url)
    cfg = _alembic_config(engine)
    command.upgrade(cfg, "0004")
    now = dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc)
    from unica.store.db import Store

    s = Store(engine, url)  # not open_store: the schema is not at head yet
    with s.write() as w:
        ca = m.CA(name="r", key_uri="file:/k.pem", subject_der=b"0", subject_text="CN=r")
        w.add(ca)
        w.flush()
        for i in range(3):
            w.execute(text("INSERT INTO certificates (ca_id, serial, status, subject_text, subject_der, sans, "
                           "not_before, not_after, profile, is_ca, fingerprint_sha256, created_at, updated_at) "
                           "VALUES (:ca, :s, 'valid', 'CN=x', :b, '[]', :n, :n, 'p', false, :f, :n, :n)"),
                      {"ca": ca.id, "s": f"a{i}", "b": b"0", "n": now.replace(tzinfo=None) if backend == "sqlite"
                       else now, "f": f"f{i}"})
        cid = w.execute(text("SELECT id FROM certificates WHERE serial = 'a1'")).scalar_one()
        w.add(m.OCSPResponse(cert_id=cid, der=b"\x30\x00", this_update=now, next_update=now, produced_at=now))
    command.upgrade(cfg, "head")
    with s.read() as r:
        assert r.execute(text("SELECT count(*) FROM certificates")).scalar_one() == 3
        assert r.execute(text("SELECT c.serial FROM ocsp_responses o JOIN certificates c ON c.id = o.cert_id")
                         ).scalar_one() == "a1"
    with s.write() as w:  # the same fingerprint twice: no longer refused by an index
        w.execute(text("UPDATE certificates SET fingerprint_sha256 = 'f0' WHERE serial = 'a2'"))
    if backend == "sqlite":
        with engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # back on after the migration
    engine.dispose()
