"""``unica backup`` / ``unica restore`` end to end, on SQLite and on PostgreSQL.

The CA keys sit on the run's SoftHSM2 token (they are not in a database backup: the drill in
test_drill.py backs them up too); the database and the home are lost and restored.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import uuid
from pathlib import Path

import pytest

from tests.backup.helpers import BackgroundIssuer, Responder, Site, crl_number, new_pg_database, scalar
from tests.conftest import assert_one_line_error


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def backend(request):  # PostgreSQL: -m slow here; CI runs the drill (tests/backup/test_drill.py) on it
    """(kind, a function giving a fresh database URL or None for SQLite in the home)."""
    if request.param == "sqlite":
        return "sqlite", lambda: None
    base = request.getfixturevalue("pg_url")
    return "postgresql", lambda: new_pg_database(base)


def _hierarchy(site: Site, token: str) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:6]
    root, sub = f"root-{tag}", f"sub-{tag}"
    site.ok("init")
    site.ok("ca", "create-root", root, "--subject", "C=CN,O=口岸联合,CN=Backup Test Root", "--key-type", "ec-p256",
            "--token", token)
    site.ok("ca", "create-sub", sub, "--parent", root, "--subject", "C=CN,O=口岸联合,CN=Backup Test Issuing",
            "--key-type", "ec-p256", "--token", token, "--crl-url", "http://crl.port.example/sub.crl",
            "--ocsp-url", "http://ocsp.port.example/")
    return root, sub


def test_backup_while_issuing_then_restore_continues(backend, tmp_path, token_label):
    kind, fresh_db = backend
    work = tmp_path / "work"
    work.mkdir()
    old = Site(tmp_path / "old-home", work, fresh_db())
    root, sub = _hierarchy(old, token_label)
    kept = old.issue(sub, "Kept Declarant")
    revoked = old.issue(sub, "Revoked Declarant")
    old.ok("cert", "revoke", revoked["serial"], "--reason", "keyCompromise")
    before = old.crl(sub, "before.crl")
    old.ok("ocsp", "signer", "--ca", sub, "--token", token_label)
    old.ok("ocsp", "presign")

    # the backup is taken while another process issues certificates
    bg = BackgroundIssuer(old, sub)
    try:
        bg.wait_for(2)
        at_start = bg.issued()
        out = tmp_path / "backup"
        made = json.loads(old.ok("backup", "--out", str(out), "--json").stdout)
        bg.wait_for(at_start + 2)
    finally:
        total = bg.stop()
    assert total >= at_start + 2
    dbfile = "unica.db" if kind == "sqlite" else "unica.pgdump"
    assert stat.S_IMODE((out / dbfile).stat().st_mode) == 0o600
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["database"] == kind and manifest["unica_version"]
    assert {c["name"]: c["crl_number"] for c in manifest["cas"]}[sub] == before
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == entry["sha256"]
    assert made["audit_head"] == manifest["audit_head"]
    # the live log records the backup (after the copy: the copy's chain ends just before it)
    shown = json.loads(old.ok("audit", "show", "--event", "backup.created", "--json").stdout)
    assert shown[-1]["details"]["manifest_sha256"] == made["manifest_sha256"]
    assert shown[-1]["id"] > manifest["audit_head"]["id"]

    # after the backup, before the disaster: a CRL is published, a certificate issued
    after = old.crl(sub, "after.crl")
    assert after > before
    lost = old.issue(sub, "Issued After Backup")

    # the disaster: the home and the database are gone
    shutil.rmtree(old.home)
    new_db = fresh_db()
    new = Site(tmp_path / "new-home", work, new_db)
    new.ok("init")  # a fresh, initialised database (no CA) is accepted
    r = json.loads(new.ok("restore", "--from", str(out), "--json").stdout)
    assert r["crl_numbers"][sub] == {"backup": before, "restored": before + 1000}

    # CRL numbers: strictly above every CRL made before the backup and after it
    again = new.crl(sub, "restored.crl")
    assert again > after > before and again == before + 1001
    # the audit log continues the backed-up chain, with the restore recorded
    assert new.ok("audit", "verify").returncode == 0
    events = json.loads(new.ok("audit", "show", "--json").stdout)
    restored = next(e for e in events if e["event"] == "home.restored")
    assert restored["details"]["backup_audit_head"] == manifest["audit_head"]
    assert restored["id"] == manifest["audit_head"]["id"] + 1
    # issuance continues (keys on the token), the lost certificate is unknown to the restored database
    fresh = new.issue(sub, "After Restore")
    serials = {c["serial"] for c in json.loads(new.ok("cert", "list", "--ca", sub, "--json").stdout)}
    assert kept["serial"] in serials and fresh["serial"] in serials and lost["serial"] not in serials
    # OCSP: the backed-up pre-signed responses are served as they were; after a pre-signing
    # with the CA key, old and new certificates are answered
    issuer = new.export(sub)
    chain = work / "chain.pem"
    chain.write_text(issuer.read_text() + new.export(root).read_text())
    with Responder(new, "--no-signer-keys") as node:
        out_kept = node.ask(issuer, chain, kept["pem"])
    assert "Response verify OK" in out_kept and ": good" in out_kept, out_kept
    new.ok("ocsp", "presign")
    with Responder(new, "--no-signer-keys") as node:
        answers = {k: node.ask(issuer, chain, c["pem"]) for k, c in
                   (("kept", kept), ("revoked", revoked), ("fresh", fresh))}
    assert "Response verify OK" in answers["kept"] and ": good" in answers["kept"], answers
    assert ": revoked" in answers["revoked"] and "Reason: keyCompromise" in answers["revoked"], answers
    assert ": good" in answers["fresh"], answers
    assert new.ok("audit", "verify").returncode == 0


def test_published_crl_raises_numbers_and_names_lost_revocations(tmp_path, token_label):
    work = tmp_path / "work"
    work.mkdir()
    old = Site(tmp_path / "old-home", work)
    _root, sub = _hierarchy(old, token_label)
    cert = old.issue(sub, "Revoked After Backup")
    old.crl(sub, "before.crl")
    out = tmp_path / "backup"
    old.ok("backup", "--out", str(out))
    old.ok("cert", "revoke", cert["serial"], "--reason", "keyCompromise")
    for i in range(3):
        old.crl(sub, f"after-{i}.crl")
    published = crl_number(work / "after-2.crl")
    new = Site(tmp_path / "new-home", work)  # no database at all yet
    p = new.ok("restore", "--from", str(out), "--crl-number-gap", "0", "--published-crl", str(work / "after-2.crl"),
               "--json")
    r = json.loads(p.stdout)
    assert r["crl_numbers"][sub]["restored"] == published
    assert r["unknown_revocations"] == [{"ca": sub, "serial": cert["serial"].lower().lstrip("0"), "status": "valid"}]
    assert "revoke them again" in p.stderr and cert["serial"].lower().lstrip("0") in p.stderr
    assert new.crl(sub, "restored.crl") == published + 1
    assert new.ok("audit", "verify").returncode == 0
    # a CRL no CA of the backup signed is refused before anything is written
    other = Site(tmp_path / "other-home", work)
    _r2, sub2 = _hierarchy(other, token_label)
    foreign = work / "foreign.crl"
    other.ok("crl", "generate", "--ca", sub2, "--out", str(foreign))
    target = Site(tmp_path / "target-home", work)
    assert_one_line_error(target.run("restore", "--from", str(out), "--published-crl", str(foreign)),
                          "signed by no CA in the backup")
    assert not target.home.exists()


def test_tampered_backup_is_refused_and_nothing_is_written(backend, tmp_path, token_label):
    kind, fresh_db = backend
    work = tmp_path / "work"
    work.mkdir()
    old = Site(tmp_path / "old-home", work, fresh_db())
    _hierarchy(old, token_label)
    (old.home / "profiles" / "agency-sign.toml").write_text(
        (Path(__file__).resolve().parents[2] / "unica" / "policies" / "builtin" / "enterprise-auth.toml").read_text())
    out = tmp_path / "backup"
    old.ok("backup", "--out", str(out))
    assert "profiles/agency-sign.toml" in json.loads((out / "manifest.json").read_text())["files"]
    dbfile = out / ("unica.db" if kind == "sqlite" else "unica.pgdump")
    for victim in (dbfile, out / "profiles" / "agency-sign.toml"):
        saved = victim.read_bytes()
        data = bytearray(saved)
        data[len(data) // 2] ^= 0x01
        victim.write_bytes(bytes(data))
        new = Site(tmp_path / f"new-{victim.name}", work, fresh_db())
        p = new.run("restore", "--from", str(out))
        assert p.returncode == 2
        assert_one_line_error(p, victim.name, "does not match the manifest")
        assert not new.home.exists()
        if kind == "postgresql":
            assert scalar(new.db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
        victim.write_bytes(saved)
    # the same backup, put back, restores
    new = Site(tmp_path / "new-ok", work, fresh_db())
    new.ok("restore", "--from", str(out))
    assert (new.home / "profiles" / "agency-sign.toml").exists()
    assert new.ok("audit", "verify").returncode == 0


def test_restore_into_a_database_with_cas_is_refused(backend, tmp_path, token_label):
    kind, fresh_db = backend
    work = tmp_path / "work"
    work.mkdir()
    site = Site(tmp_path / "home", work, fresh_db())
    _hierarchy(site, token_label)
    out = tmp_path / "backup"
    site.ok("backup", "--out", str(out))
    entries = scalar(site.url, "SELECT count(*) FROM audit_log")
    p = site.run("restore", "--from", str(out))
    assert p.returncode == 1
    assert_one_line_error(p, "already holds 2 CA(s)")
    assert scalar(site.url, "SELECT count(*) FROM audit_log") == entries
    # a backup of the other kind of database is refused too (exit 2)
    other_url = f"sqlite:///{tmp_path / 'x.db'}" if kind == "postgresql" else None
    if other_url:
        p = site.run("restore", "--from", str(out), "--db", other_url)
        assert p.returncode == 2
        assert_one_line_error(p, "postgresql database")


def test_backup_out_must_be_new_or_empty(tmp_path, token_label):
    work = tmp_path / "work"
    work.mkdir()
    site = Site(tmp_path / "home", work)
    site.ok("init")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    p = site.run("backup", "--out", str(busy))
    assert p.returncode == 2
    assert_one_line_error(p, "not empty")
    p = site.run("backup", "--out", str(tmp_path / "no" / "such" / "dir"))
    assert p.returncode == 2
    assert_one_line_error(p, "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    site.ok("backup", "--out", str(empty))
    assert (empty / "manifest.json").exists()


def test_bounded_reads(tmp_path, token_label):
    work = tmp_path / "work"
    work.mkdir()
    site = Site(tmp_path / "home", work)
    site.ok("init")
    out = tmp_path / "backup"
    site.ok("backup", "--out", str(out))
    target = Site(tmp_path / "target", work)
    # a published CRL that never ends
    p = target.run("restore", "--from", str(out), "--published-crl", "/dev/zero")
    assert p.returncode == 2
    assert_one_line_error(p, "larger than")
    # a database file larger than the manifest says: at most its size + 1 bytes are read
    with open(out / "unica.db", "ab") as f:
        f.write(b"\0" * 4096)
    assert_one_line_error(target.run("restore", "--from", str(out)), "size differs")
    # a manifest that is far too large
    (out / "manifest.json").write_bytes(b" " * (4 * 1024 * 1024 + 1))
    p = target.run("restore", "--from", str(out))
    assert p.returncode == 2
    assert_one_line_error(p, "larger than")
    assert not target.home.exists()


def test_password_goes_to_pg_tools_in_the_environment_only():
    from unica.store.backup import _conninfo

    conninfo, env = _conninfo("postgresql+psycopg://unica:s3cr%27et@db.example.cn:5433/unica?sslmode=require")
    assert "s3cr" not in conninfo
    assert env["PGPASSWORD"] == "s3cr'et"
    assert "host='db.example.cn'" in conninfo and "port='5433'" in conninfo and "sslmode='require'" in conninfo
    _, env = _conninfo("postgresql+psycopg://unica@db.example.cn/unica")
    assert "PGPASSWORD" not in env or env["PGPASSWORD"] == os.environ.get("PGPASSWORD")


def test_a_manifest_that_disagrees_with_the_database_leaves_the_target_empty(backend, tmp_path, token_label):
    """The files match their hashes but the manifest was edited (its audit head): the restored
    database is checked against it before anything is committed, and the target is emptied again."""
    kind, fresh_db = backend
    work = tmp_path / "work"
    work.mkdir()
    old = Site(tmp_path / "old-home", work, fresh_db())
    _hierarchy(old, token_label)
    out = tmp_path / "backup"
    old.ok("backup", "--out", str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["audit_head"]["hash"] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(manifest))
    new = Site(tmp_path / "new-home", work, fresh_db())
    p = new.run("restore", "--from", str(out))
    assert p.returncode == 1
    assert_one_line_error(p, "audit head differs from the manifest")
    if kind == "sqlite":
        assert not (new.home / "unica.db").exists()
    else:
        assert scalar(new.db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
