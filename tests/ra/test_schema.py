"""Migration 0007 (the registry) on SQLite and PostgreSQL: it upgrades a 0006 database that holds
certificates (they keep their rows, with no enterprise), the migrated schema is what the models
say, and it downgrades again."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import create_engine, inspect, select, text

from unica.store import models as m, open_store
from unica.store.db import _alembic_config


def _empty_url(backend, request, tmp_path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/unica.db"
    url = request.getfixturevalue("pg_url")
    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    eng.dispose()
    return url


@pytest.mark.parametrize("backend", ["sqlite", "pg"])
def test_0007_upgrades_a_0006_database_and_matches_the_models(backend, request, tmp_path):
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    url = _empty_url(backend, request, tmp_path)
    store = open_store(url, create=True)
    cfg = _alembic_config(store.engine)
    command.downgrade(cfg, "0006")
    now = dt.datetime.now(dt.timezone.utc)
    with store.engine.begin() as c:  # a 0006 database with a CA and a certificate
        c.execute(text("INSERT INTO cas (id, name, key_uri, subject_der, subject_text, status, crl_number, "
                       "crl_shards, ocsp_mode, profiles, settings, created_at) VALUES (1, 'root', 'file:/k', "
                       ":d, 'CN=root', 'active', 0, 1, 'presigned', '[]', '{}', :now)"), {"d": b"0", "now": now})
        c.execute(text("INSERT INTO certificates (id, ca_id, serial, status, subject_text, subject_der, sans, "
                       "not_before, not_after, profile, is_ca, created_at, updated_at) VALUES (1, 1, 'abc', "
                       "'valid', 'CN=x', :d, '[]', :now, :now, 'tls-server', false, :now, :now)"),
                  {"d": b"0", "now": now})
    command.upgrade(cfg, "0007")
    with store.engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0007"
        diff = compare_metadata(MigrationContext.configure(c, opts={"compare_type": False}), m.Base.metadata)
    # what the models say of the registry is what the migration made (older tables: not this test's)
    mine = {"enterprises", "applications", "application_approvals", "revocation_requests", "idempotency_keys"}
    diff = [d for d in diff if any(t in repr(d) for t in mine) or "enterprise_id" in repr(d)]
    assert diff == []
    cols = {c["name"] for c in inspect(store.engine).get_columns("certificates")}
    assert "enterprise_id" in cols
    with store.write() as s:
        cert = s.get(m.Certificate, 1)
        assert cert.enterprise_id is None
        e = m.Enterprise(uscc="91110000600037341L", name="X", office="customs", status="active")
        s.add(e)
        s.flush()
        cert.enterprise_id = e.id
        s.add(m.Application(id="a000000000001", enterprise_id=e.id, ca_name="root", profile="p", holder="张三",
                            source="officer", status="submitted", code_salt="00", code_failures=0,
                            code_released=False))
        s.add(m.IdempotencyKey(client="c", key="k", method="POST", path="/x", request_sha256="0" * 64))
    with store.read() as s:
        assert s.scalar(select(m.Application.holder)) == "张三"
    with store.write() as s:  # downgrade needs no registry rows
        s.query(m.IdempotencyKey).delete()
        s.query(m.Application).delete()
        s.get(m.Certificate, 1).enterprise_id = None
        s.query(m.Enterprise).delete()
    command.downgrade(cfg, "0006")
    assert "enterprise_id" not in {c["name"] for c in inspect(store.engine).get_columns("certificates")}
    assert "enterprises" not in inspect(store.engine).get_table_names()
    command.upgrade(cfg, "head")  # and on to the later migrations
    store.dispose()
