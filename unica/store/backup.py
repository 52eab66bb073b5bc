"""Backing up the database (with the home's profiles and configuration) and restoring it.

A backup is a directory:

- ``unica.db`` (SQLite, made with SQLite's online backup API: a consistent copy while other
  processes keep writing) or ``unica.pgdump`` (PostgreSQL, ``pg_dump --format=custom`` of an
  exported snapshot, so that what the manifest says is exactly what the dump holds);
- ``config.toml`` and ``profiles/NAME.toml`` from the home, if there are any;
- ``manifest.json``, written last: when it was made, unica's version, the schema revision,
  the size and SHA-256 of every file, each CA with its CRL number, and the audit chain head.
  A directory without a manifest is an unfinished backup.

Restoring checks every file against the manifest first (the bytes checked are the bytes
restored: each file is copied to a private temporary directory while it is hashed), then
fills a database that holds no CA, migrates it to the current schema, and -- in the same
transaction that records ``home.restored`` -- raises every CA's CRL number: CRLs published
after the backup and before the disaster carry numbers the restored database never saw.
RFC 5280 (5.2.3) wants CRL numbers that increase; a gap is allowed, a repeat is not.

This module holds the mechanics and takes the audit actor as given; authorization is the
caller's (:mod:`unica.ca.backup`).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import glob
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import make_url

from unica import __version__
from unica.errors import ConfigurationError, EnvironmentFailure, InputError, MalformedInput, OutputError, StoreError
from unica.store import models as m
from unica.store.db import Store, _make_engine, _redact, default_db_url, open_store, schema_revision

MANIFEST = "manifest.json"
FORMAT = "unica-backup/1"
SQLITE_FILE = "unica.db"
PG_FILE = "unica.pgdump"
CONFIG_FILE = "config.toml"
#: the default raise of every CA's CRL number at a restore
DEFAULT_CRL_GAP = 1000
#: the manifest is small (a few lines per CA)
MAX_MANIFEST = 4 * 1024 * 1024
#: a profile or config file (as unica.boundedio.MAX_TEXT)
MAX_TEXT = 1024 * 1024
MAX_CRL = 16 * 1024 * 1024
#: the database file or dump: a ceiling against a manifest that claims an absurd size
MAX_DATABASE = 1 << 40

_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.toml")
_CHUNK = 1 << 20


# --- results -------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupResult:
    directory: Path
    kind: str  # sqlite | postgresql
    files: dict  # name -> {"sha256", "size"}
    cas: tuple  # ({"name", "crl_number", ...}, ...)
    audit_head: dict  # {"id", "hash"}
    schema_revision: str
    created_at: dt.datetime
    manifest_sha256: str

    def to_dict(self) -> dict:
        return {"directory": str(self.directory), "database": self.kind, "schema_revision": self.schema_revision,
                "created_at": self.created_at.isoformat(), "files": self.files,
                "cas": [{"name": c["name"], "crl_number": c["crl_number"]} for c in self.cas],
                "audit_head": self.audit_head, "manifest_sha256": self.manifest_sha256}


@dataclass(frozen=True)
class RestoreResult:
    database: str  # the URL, password hidden
    backup_created_at: str
    schema_from: str
    schema_to: str
    crl_numbers: dict  # CA name -> {"backup": n, "restored": n}
    audit_entry: int
    written: tuple = ()  # home files written (relative to the home)
    set_aside: tuple = ()  # backed-up files written beside, not over, the home's own
    unknown_revocations: tuple = field(default=())  # ({"ca", "serial", "status"}, ...) from --published-crl

    def to_dict(self) -> dict:
        return {"database": self.database, "backup_created_at": self.backup_created_at,
                "schema_from": self.schema_from, "schema_to": self.schema_to, "crl_numbers": self.crl_numbers,
                "audit_entry": self.audit_entry, "written": list(self.written), "set_aside": list(self.set_aside),
                "unknown_revocations": list(self.unknown_revocations)}


# --- backup --------------------------------------------------------------------------


def write_backup(store: Store, out: str | os.PathLike, *, home: Path, profiles_dir: Path | None = None,
                 actor: str | None = None, audit_details: dict | None = None,
                 progress: Callable[[str], None] | None = None) -> BackupResult:
    """Back up ``store`` and the home's configuration into the directory ``out``.

    ``out`` must be missing (it is created, mode 0700; its parent must exist) or empty.
    The event ``backup.created`` is recorded in ``store``'s audit log after the copy (so the
    copy's chain ends just before it), naming the manifest's SHA-256.
    """
    out = Path(out)
    created = _prepare_out_dir(out)
    say = progress or (lambda _msg: None)
    try:
        files: dict[str, dict] = {}
        if store.dialect == "sqlite":
            say("copying the SQLite database (online backup)")
            state = _backup_sqlite(store, out / SQLITE_FILE)
            files[SQLITE_FILE] = _file_entry(out / SQLITE_FILE)
        elif store.dialect == "postgresql":
            say("dumping the PostgreSQL database (pg_dump)")
            state = _backup_postgresql(store, out / PG_FILE)
            files[PG_FILE] = _file_entry(out / PG_FILE)
        else:  # pragma: no cover - _make_engine refuses other databases
            raise StoreError(f"cannot back up a {store.dialect} database")
        config = home / CONFIG_FILE
        if config.is_file():
            data = _read_bounded(config, MAX_TEXT, "config")
            _write_private(out / CONFIG_FILE, data)
            files[CONFIG_FILE] = _entry(data)
        pdir = profiles_dir or home / "profiles"
        if pdir.is_dir():
            names = sorted(p.name for p in pdir.iterdir() if p.is_file() and _PROFILE_NAME.fullmatch(p.name))
            if names:
                (out / "profiles").mkdir(mode=0o700)
            for name in names:
                data = _read_bounded(pdir / name, MAX_TEXT, "profile")
                _write_private(out / "profiles" / name, data)
                files[f"profiles/{name}"] = _entry(data)
        now = dt.datetime.now(dt.timezone.utc)
        manifest = {"format": FORMAT, "created_at": now.isoformat(), "unica_version": __version__,
                    "database": store.dialect, "schema_revision": state["schema_revision"],
                    "files": files, "cas": state["cas"], "audit_head": state["audit_head"]}
        body = (json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        _write_private(out / MANIFEST, body)
        _fsync_dir(out)
    except BaseException:
        _remove_partial(out, created)
        raise
    digest = hashlib.sha256(body).hexdigest()
    details = {"directory": str(out.resolve()), "database": store.dialect, "manifest_sha256": digest,
               "schema_revision": state["schema_revision"], "audit_head": state["audit_head"],
               "files": {k: v["sha256"] for k, v in files.items()},
               "crl_numbers": {c["name"]: c["crl_number"] for c in state["cas"]}}
    details.update(audit_details or {})
    with store.write() as s:
        store.audit(s, "backup.created", target=str(out.resolve()), details=details, actor=actor)
    return BackupResult(out, store.dialect, files, tuple(state["cas"]), state["audit_head"],
                        state["schema_revision"], now, digest)


def _prepare_out_dir(out: Path) -> bool:
    """True if ``out`` was created here."""
    try:
        if out.exists() or out.is_symlink():
            if not out.is_dir():
                raise InputError(f"--out {out}: not a directory")
            if any(out.iterdir()):
                raise InputError(f"--out {out}: the directory is not empty (a backup goes into a new or empty "
                                 "directory)")
            return False
        if not out.parent.is_dir():
            raise InputError(f"--out {out}: directory {out.parent} does not exist")
        out.mkdir(mode=0o700)
        return True
    except OSError as e:
        raise OutputError(f"cannot write the backup into {out}: {e.strerror or e}") from None


def _remove_partial(out: Path, created: bool) -> None:
    with contextlib.suppress(OSError):
        if created:
            shutil.rmtree(out)
        else:
            for p in out.iterdir():
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def _backup_sqlite(store: Store, dest: Path) -> dict:
    src_path = store.engine.url.database
    if not src_path or src_path == ":memory:":
        raise StoreError("an in-memory SQLite database cannot be backed up")
    try:
        os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        src = sqlite3.connect(f"{Path(src_path).resolve().as_uri()}?mode=ro", uri=True, timeout=60)
        try:
            dst = sqlite3.connect(dest)
            try:
                # in one step (pages=-1): the copy is one read transaction of the source, a
                # consistent snapshot; WAL lets other processes keep writing meanwhile
                src.backup(dst, pages=-1)
                dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
                state = _sqlite_state(dst)
                check = dst.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise StoreError(f"the copy of the database fails SQLite's check: {check}")
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as e:
        raise StoreError(f"cannot back up the database {src_path}: {e}") from None
    except OSError as e:
        raise OutputError(f"cannot write {dest}: {e.strerror or e}") from None
    return state


def _sqlite_state(conn: sqlite3.Connection) -> dict:
    rev = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    head = conn.execute("SELECT last_id, last_hash FROM audit_head WHERE id = 1").fetchone()
    rows = conn.execute("SELECT name, crl_number, status, key_uri, cert_der FROM cas ORDER BY id").fetchall()
    return _state(rev[0] if rev else None, head, rows)


def _state(rev, head, rows) -> dict:
    if rev is None or head is None:
        raise StoreError("the database has no schema revision or no audit head: not a unica database")
    cas = [{"name": r[0], "crl_number": int(r[1]), "status": r[2], "key_uri": r[3],
            "cert": base64.b64encode(bytes(r[4])).decode() if r[4] is not None else None,
            "cert_sha256": hashlib.sha256(bytes(r[4])).hexdigest() if r[4] is not None else None}
           for r in rows]
    return {"schema_revision": rev, "audit_head": {"id": int(head[0]), "hash": head[1]}, "cas": cas}


def _backup_postgresql(store: Store, dest: Path) -> dict:
    pg_dump = find_pg_tool("pg_dump")
    with store.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            # the dump and the manifest read one snapshot: pg_dump --snapshot while this stays open
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar()
            rev = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            head = conn.execute(text("SELECT last_id, last_hash FROM audit_head WHERE id = 1")).first()
            rows = conn.execute(text("SELECT name, crl_number, status, key_uri, cert_der FROM cas ORDER BY id")).all()
            state = _state(rev, head, rows)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            _run_pg(store.url, [pg_dump, "--format=custom", "--no-password", f"--snapshot={snapshot}",
                                f"--file={dest}"], "pg_dump")
    return state


# --- PostgreSQL tools ------------------------------------------------------------------


def find_pg_tool(name: str) -> str:
    """``pg_dump`` / ``pg_restore``: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found

    def version(p: str) -> int:
        m_ = re.search(r"/postgresql/(\d+)/", p)
        return int(m_.group(1)) if m_ else 0

    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=version, reverse=True)
    for c in candidates:
        if os.access(c, os.X_OK):
            return c
    raise EnvironmentFailure(f"{name} not found (on PATH or in /usr/lib/postgresql/*/bin): install the "
                             "PostgreSQL client tools")


def _conninfo(url: str) -> tuple[str, dict]:
    """A libpq ``key=value`` connection string without the password, and the environment that
    carries the password (``PGPASSWORD``: never on a command line, where ``ps`` shows it)."""
    u = make_url(url)

    def quote(v) -> str:
        return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"

    parts = {"host": u.host, "port": u.port, "user": u.username, "dbname": u.database}
    for k, v in (u.query or {}).items():
        parts[k] = v if isinstance(v, str) else v[-1]
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    if u.password is not None:
        env["PGPASSWORD"] = str(u.password)
    return " ".join(f"{k}={quote(v)}" for k, v in parts.items() if v is not None), env


def _run_pg(url: str, argv: list[str], what: str) -> None:
    conninfo, env = _conninfo(url)
    try:
        p = subprocess.run([*argv, f"--dbname={conninfo}"], env=env, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
    except OSError as e:
        raise EnvironmentFailure(f"cannot run {what}: {e.strerror or e}") from None
    if p.returncode != 0:
        msg = " ".join((p.stderr or p.stdout or f"exit status {p.returncode}").split())[:500]
        raise StoreError(f"{what} failed on {_redact(url)}: {msg}")


# --- reading a backup ------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    directory: Path
    data: dict

    @property
    def kind(self) -> str:
        return self.data["database"]

    @property
    def database_file(self) -> str:
        return SQLITE_FILE if self.kind == "sqlite" else PG_FILE


def read_manifest(directory: str | os.PathLike) -> Manifest:
    """The backup's manifest, checked for shape (not yet the files: :func:`verified_copy`)."""
    d = Path(directory)
    path = d / MANIFEST
    if not d.is_dir():
        raise InputError(f"--from {d}: not a directory")
    if not path.is_file():
        raise InputError(f"backup {d}: no {MANIFEST} (not a unica backup, or an unfinished one)")
    raw = _read_bounded(path, MAX_MANIFEST, "backup manifest", unreadable=InputError)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise MalformedInput(f"backup manifest {path}: not JSON: {e}") from None
    bad = _manifest_problem(data)
    if bad:
        raise MalformedInput(f"backup manifest {path}: {bad}")
    return Manifest(d, data)


def _manifest_problem(data) -> str | None:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return f"not a {FORMAT} manifest"
    if data.get("database") not in ("sqlite", "postgresql"):
        return "database: must be sqlite or postgresql"
    files = data.get("files")
    if not isinstance(files, dict) or not files:
        return "files: missing"
    dbfile = SQLITE_FILE if data["database"] == "sqlite" else PG_FILE
    if dbfile not in files:
        return f"files: {dbfile} missing"
    for name, entry in files.items():
        if not (name in (SQLITE_FILE, PG_FILE, CONFIG_FILE)
                or (name.startswith("profiles/") and _PROFILE_NAME.fullmatch(name[len("profiles/"):]))):
            return f"files: {name!r}: not a file a backup holds"
        if (not isinstance(entry, dict) or not isinstance(entry.get("size"), int) or entry["size"] < 0
                or not isinstance(entry.get("sha256"), str) or not re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])):
            return f"files: {name}: needs size and sha256"
    if not isinstance(data.get("schema_revision"), str):
        return "schema_revision: missing"
    head = data.get("audit_head")
    if not isinstance(head, dict) or not isinstance(head.get("id"), int) or not isinstance(head.get("hash"), str):
        return "audit_head: missing"
    cas = data.get("cas")
    if not isinstance(cas, list) or not all(isinstance(c, dict) and isinstance(c.get("name"), str)
                                            and isinstance(c.get("crl_number"), int) for c in cas):
        return "cas: missing"
    if not isinstance(data.get("created_at"), str):
        return "created_at: missing"
    return None


def verified_copy(manifest: Manifest, name: str, into: Path) -> Path:
    """Copy the backup's file ``name`` into the directory ``into`` (mode 0600), hashing it as it
    is read: the copy is what was checked. A file whose size or SHA-256 differs from the
    manifest's is refused (:class:`MalformedInput`, nothing else is done)."""
    entry = manifest.data["files"][name]
    src = manifest.directory / name
    limit = min(entry["size"], MAX_DATABASE)
    dest = into / name.replace("/", "_")
    h = hashlib.sha256()
    total = 0
    try:
        with open(src, "rb") as f, open(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            while True:
                chunk = f.read(min(_CHUNK, limit + 1 - total))
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    break
                h.update(chunk)
                out.write(chunk)
    except FileNotFoundError:
        raise MalformedInput(f"backup {manifest.directory}: {name} is missing") from None
    except OSError as e:
        raise InputError(f"backup {manifest.directory}: {name}: cannot read: {e.strerror or e}") from None
    if total != entry["size"] or h.hexdigest() != entry["sha256"]:
        raise MalformedInput(f"backup {manifest.directory}: {name} does not match the manifest "
                             f"({'size' if total != entry['size'] else 'SHA-256'} differs): the backup was changed "
                             "or damaged; nothing was restored")
    return dest


# --- restore ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedCRL:
    path: str
    issuer_der: bytes
    number: int
    sha256: str
    crl: object  # cryptography.x509.CertificateRevocationList


def read_published_crl(path: str | os.PathLike) -> PublishedCRL:
    """A CRL (DER or PEM) that was published; at most 16 MiB are read."""
    from cryptography import x509

    raw = _read_bounded(path, MAX_CRL, "CRL", unreadable=InputError)
    try:
        crl = (x509.load_pem_x509_crl(raw) if raw.lstrip().startswith(b"-----BEGIN")
               else x509.load_der_x509_crl(raw))
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        raise MalformedInput(f"CRL {path}: has no CRL number") from None
    except ValueError as e:
        raise MalformedInput(f"CRL {path}: not a CRL: {' '.join(str(e).split())[:200]}") from None
    return PublishedCRL(str(path), crl.issuer.public_bytes(), int(number), hashlib.sha256(raw).hexdigest(), crl)


def _match_crls(manifest: Manifest, crls: Iterable[PublishedCRL]) -> dict[str, list[PublishedCRL]]:
    """Each published CRL's CA in the backup: same issuer name, and its signature verifies
    with that CA's public key. A CRL of no CA in the backup is refused."""
    from cryptography import x509

    certs = []
    for c in manifest.data["cas"]:
        if c.get("cert"):
            try:
                certs.append((c["name"], x509.load_der_x509_certificate(base64.b64decode(c["cert"]))))
            except ValueError:
                raise MalformedInput(f"backup manifest: CA {c['name']}: unreadable certificate") from None
    found: dict[str, list[PublishedCRL]] = {}
    for crl in crls:
        for name, cert in certs:
            if cert.subject.public_bytes() == crl.issuer_der:
                try:
                    ok = crl.crl.is_signature_valid(cert.public_key())
                except (TypeError, ValueError):
                    ok = False
                if ok:
                    found.setdefault(name, []).append(crl)
                    break
        else:
            raise InputError(f"--published-crl {crl.path}: signed by no CA in the backup")
    return found


def target_state(url: str) -> dict:
    """What the restore target holds: ``{"tables": bool, "cas": int, "head": (id, hash) | None}``."""
    engine = _make_engine(url)
    try:
        if engine.dialect.name == "sqlite":
            path = engine.url.database
            if not path or path == ":memory:":
                raise ConfigurationError("restore needs a database file or a PostgreSQL database, not :memory:")
            p = Path(path)
            if not p.exists() or p.stat().st_size == 0:
                return {"tables": False, "cas": 0, "head": None}
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            if not tables:
                return {"tables": False, "cas": 0, "head": None}
            if "alembic_version" not in tables or "cas" not in tables:
                shown = ", ".join(sorted(tables)[:5])
                raise StoreError(f"database {_redact(url)} holds other tables ({shown}) and no unica schema: "
                                 "restore does not write into it")
            n = conn.execute(select(func.count()).select_from(m.CA.__table__)).scalar()
            head = conn.execute(text("SELECT last_id, last_hash FROM audit_head WHERE id = 1")).first()
            return {"tables": True, "cas": int(n), "head": (int(head[0]), head[1]) if head else None}
    except StoreError:
        raise
    except Exception as e:  # noqa: BLE001 - sqlalchemy / driver errors: one line
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(e, (SQLAlchemyError, sqlite3.Error, OSError)):
            raise StoreError(f"cannot read the restore target {_redact(url)}: "
                             f"{' '.join(str(getattr(e, 'orig', e)).split())[:300]}") from None
        raise
    finally:
        engine.dispose()


def restore_backup(directory: str | os.PathLike, *, url: str | None = None, home: Path,
                   profiles_dir: Path | None = None, crl_gap: int = DEFAULT_CRL_GAP,
                   published_crls: Iterable[str | os.PathLike] = (), actor: str | None = None,
                   progress: Callable[[str], None] | None = None) -> RestoreResult:
    """Restore the backup in ``directory`` into the database ``url`` (default: the home's) and
    the home ``home``. Refused, with nothing written, when a file differs from the manifest,
    a published CRL is signed by no CA of the backup, or the target database holds a CA."""
    if not isinstance(crl_gap, int) or crl_gap < 0:
        raise InputError("--crl-number-gap must be 0 or more")
    say = progress or (lambda _msg: None)
    url = url or default_db_url()
    manifest = read_manifest(directory)
    published = [read_published_crl(p) for p in published_crls]
    by_ca = _match_crls(manifest, published)
    rev_from = manifest.data["schema_revision"]
    _check_known_revision(rev_from)
    engine = _make_engine(url)
    kind = engine.dialect.name
    engine.dispose()
    if kind != manifest.kind:
        raise InputError(f"backup {manifest.directory} is of a {manifest.kind} database; the target "
                         f"{_redact(url)} is {kind} (set UNICA_DB / --db to a {manifest.kind} database)")
    state = target_state(url)
    if state["cas"]:
        raise StoreError(f"the database {_redact(url)} already holds {state['cas']} CA(s): restore goes into a fresh "
                         "database (a new UNICA_HOME, or an empty PostgreSQL database)")
    pdir = profiles_dir or home / "profiles"
    with tempfile.TemporaryDirectory(prefix="unica-restore-") as tmp:
        tmpd = Path(tmp)
        say("checking the backup's files against the manifest")
        copies = {name: verified_copy(manifest, name, tmpd) for name in sorted(manifest.data["files"])}
        plan, set_aside = _plan_home_files(manifest, copies, home, pdir, url)
        # from here on the target is written
        _ensure_home(home, pdir)
        say(f"restoring the database into {_redact(url)}")
        try:
            if kind == "sqlite":
                _restore_sqlite(copies[SQLITE_FILE], Path(make_url(url).database))
            else:
                _restore_postgresql(copies[PG_FILE], url, state["tables"])
            result = _after_restore(manifest, url, crl_gap, by_ca, state, actor, rev_from)
        except BaseException:
            _wipe(url)
            raise
    written = []
    for dest, data in plan:
        _write_private(dest, data, mode=0o644)
        written.append(str(dest.relative_to(home)) if dest.is_relative_to(home) else str(dest))
    return RestoreResult(**{**result, "written": tuple(written), "set_aside": tuple(set_aside)})


def _check_known_revision(rev: str) -> None:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    scripts = ScriptDirectory(str(Path(__file__).parent / "migrations"))
    try:
        known = scripts.get_revision(rev)
    except CommandError:
        known = None
    if known is None:
        raise StoreError(f"the backup's schema revision {rev} is unknown to this unica ({__version__}): restore it "
                         "with the unica version that made it, or a newer one")


def _plan_home_files(manifest: Manifest, copies: dict, home: Path, pdir: Path, url: str):
    """Where each backed-up home file goes: a profile the home lacks is written; one it has
    with other content is refused (before anything is written). ``config.toml`` replaces none:
    the home's own (or one that names another database) stays, the backup's is written beside
    it as ``config.toml.from-backup``."""
    plan: list[tuple[Path, bytes]] = []
    set_aside: list[str] = []
    for name, copy in copies.items():
        if name in (SQLITE_FILE, PG_FILE):
            continue
        data = copy.read_bytes()  # checked against the manifest's size: bounded
        if name == CONFIG_FILE:
            dest = home / CONFIG_FILE
            other_db = _config_db(data)
            if dest.exists() or (other_db is not None and _same_db(other_db, home, url) is False):
                dest = home / (CONFIG_FILE + ".from-backup")
                set_aside.append(dest.name)
            plan.append((dest, data))
            continue
        dest = pdir / name[len("profiles/"):]
        if dest.exists():
            if _read_bounded(dest, MAX_TEXT, "profile") != data:
                raise StoreError(f"profile {dest} exists with other content than the backup's {name}: move it "
                                 "away, or restore into a fresh UNICA_HOME")
            continue
        plan.append((dest, data))
    return plan, set_aside


def _config_db(data: bytes) -> str | None:
    import tomllib

    try:
        v = tomllib.loads(data.decode("utf-8")).get("db")
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return v if isinstance(v, str) else None


def _same_db(configured: str, home: Path, url: str) -> bool:
    try:
        a, b = make_url(configured), make_url(url)
    except Exception:  # noqa: BLE001 - an unreadable URL is not the same one
        return False
    if a.get_backend_name() == "sqlite" and b.get_backend_name() == "sqlite":
        pa = Path(a.database or "")
        pa = pa if pa.is_absolute() else home / pa
        return pa.resolve() == Path(b.database or "").resolve()
    return (a.get_backend_name(), a.host, a.port, a.database) == (b.get_backend_name(), b.host, b.port, b.database)


def _ensure_home(home: Path, pdir: Path) -> None:
    try:
        home.mkdir(parents=True, exist_ok=True)
        pdir.mkdir(parents=True, exist_ok=True)
        keys = home / "keys"
        if not keys.exists():
            keys.mkdir(mode=0o700)
    except OSError as e:
        raise EnvironmentFailure.from_os(f"cannot create unica home {home}", e) from None


def _restore_sqlite(source: Path, target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
        try:
            check = src.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StoreError(f"the backed-up database fails SQLite's check: {check}")
            dst = sqlite3.connect(target, timeout=60)
            try:
                src.backup(dst, pages=-1)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as e:
        raise StoreError(f"cannot restore into {target}: {e}") from None
    except OSError as e:
        raise StoreError(f"cannot restore into {target}: {e.strerror or e}") from None


def _restore_postgresql(source: Path, url: str, had_tables: bool) -> None:
    pg_restore = find_pg_tool("pg_restore")
    if had_tables:  # a unica database with no CA (e.g. just made by 'unica init'): emptied first
        _wipe(url)
    _run_pg(url, [pg_restore, "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error",
                  "--no-password", str(source)], "pg_restore")


def _wipe(url: str) -> None:
    """Empty the restore target again (it held no CA): after a failed restore, or before one
    into a database that 'unica init' made."""
    engine = _make_engine(url)
    try:
        if engine.dialect.name == "sqlite":
            p = Path(engine.url.database)
            engine.dispose()
            for f in (p, p.with_name(p.name + "-wal"), p.with_name(p.name + "-shm")):
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
            return
        with engine.begin() as conn:
            for t in inspect(conn).get_table_names():
                conn.execute(text(f'DROP TABLE IF EXISTS "{t}" CASCADE'))
    finally:
        engine.dispose()


def _after_restore(manifest: Manifest, url: str, crl_gap: int, by_ca: dict, replaced: dict, actor, rev_from) -> dict:
    """Migrate to the current schema, check the restored database against the manifest, raise
    the CRL numbers and record ``home.restored`` -- the last three in one transaction."""
    store = open_store(url, create=True)  # runs the migrations from the backup's revision to head
    try:
        rev_to = schema_revision(store)
        want_head = manifest.data["audit_head"]
        cas_in_manifest = {c["name"]: c for c in manifest.data["cas"]}
        numbers: dict[str, dict] = {}
        unknown: list[dict] = []
        with store.write() as s:
            head = s.get(m.AuditHead, 1, with_for_update=True)
            if head is None or (head.last_id, head.last_hash) != (want_head["id"], want_head["hash"]):
                raise StoreError("the restored database's audit head differs from the manifest's: the backup was "
                                 "changed; nothing was restored")
            rows = s.execute(select(m.CA).order_by(m.CA.id).with_for_update()).scalars().all()
            if sorted(r.name for r in rows) != sorted(cas_in_manifest):
                raise StoreError("the restored database's CAs differ from the manifest's: the backup was changed; "
                                 "nothing was restored")
            for row in rows:
                listed = cas_in_manifest[row.name]
                if listed.get("cert_sha256") != (hashlib.sha256(row.cert_der).hexdigest() if row.cert_der else None):
                    raise StoreError(f"CA {row.name}: its certificate differs from the manifest's: the backup was "
                                     "changed; nothing was restored")
                highest_db = s.execute(select(func.max(m.CRL.number)).where(m.CRL.ca_id == row.id)).scalar() or 0
                published = max((c.number for c in by_ca.get(row.name, ())), default=0)
                new = max(row.crl_number + crl_gap, published, highest_db)
                numbers[row.name] = {"backup": row.crl_number, "restored": new}
                if published:
                    numbers[row.name]["published"] = published
                row.crl_number = new
                unknown += _unknown_revocations(s, row, by_ca.get(row.name, ()))
            details = {"backup": str(manifest.directory.resolve()), "backup_created_at": manifest.data["created_at"],
                       "backup_audit_head": want_head, "schema_from": rev_from, "schema_to": rev_to,
                       "crl_number_gap": crl_gap, "crl_numbers": numbers,
                       "published_crls": [{"ca": ca, "number": c.number, "sha256": c.sha256}
                                          for ca, crls in by_ca.items() for c in crls]}
            if unknown:
                details["revoked_after_backup"] = unknown
            if replaced["head"] is not None:
                details["replaced_empty_database_audit_head"] = {"id": replaced["head"][0],
                                                                  "hash": replaced["head"][1]}
            entry = store.audit(s, "home.restored", details=details, actor=actor)
        return {"database": _redact(url), "backup_created_at": manifest.data["created_at"], "schema_from": rev_from,
                "schema_to": rev_to, "crl_numbers": numbers, "audit_entry": entry.id,
                "unknown_revocations": tuple(unknown)}
    finally:
        store.dispose()


def _unknown_revocations(session, row: m.CA, crls: Iterable[PublishedCRL]) -> list[dict]:
    """Serials a published CRL lists that the restored database does not hold as revoked or
    on hold: revoked after the backup. The operator revokes them again (the restore says which)."""
    serials: set[int] = set()
    for c in crls:
        for rc in c.crl:
            serials.add(rc.serial_number)
    if not serials:
        return []
    hexes = sorted(format(n, "x") for n in serials)
    known = {}
    for i in range(0, len(hexes), 500):
        part = hexes[i:i + 500]
        known.update(dict(session.execute(select(m.Certificate.serial, m.Certificate.status)
                                          .where(m.Certificate.ca_id == row.id, m.Certificate.serial.in_(part)))
                          .all()))
    return [{"ca": row.name, "serial": h, "status": known.get(h, "unknown")}
            for h in hexes if known.get(h) not in ("revoked", "hold")]


# --- small file helpers ------------------------------------------------------------------


def _entry(data: bytes) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _file_entry(path: Path) -> dict:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
            size += len(chunk)
    return {"sha256": h.hexdigest(), "size": size}


def _read_bounded(path, limit: int, what: str, unreadable=StoreError) -> bytes:
    from unica.boundedio import read_limited

    return read_limited(path, limit, what, unreadable=unreadable)


def _write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` atomically (a temporary file beside it, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
