"""Opening the database and running transactions.

SQLite (the embedded default, ``$UNICA_HOME/unica.db``) runs in WAL mode with a busy
timeout, and write transactions start with ``BEGIN IMMEDIATE`` so concurrent writers queue
instead of failing on a lock upgrade. PostgreSQL runs READ COMMITTED; code that needs a
counter (CRL numbers) or the audit chain head takes a row lock (``SELECT ... FOR UPDATE``).
"""

from __future__ import annotations

import contextlib
import functools
import datetime as dt
import getpass
import hashlib
import json
import os
import threading
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator, NamedTuple

from sqlalchemy import bindparam, create_engine, event, insert, select, text, update
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from unica.errors import ConfigurationError, StoreError
from unica.store import models as m

GENESIS_HASH = "0" * 64

#: the operator acting in this context (an :class:`unica.auth.guard.Actor`, set by
#: :func:`unica.auth.guard.authorized` while an operation runs): every audit entry appended
#: meanwhile names them -- the actor column, and ``operator`` (and approvers) in the details
CURRENT_ACTOR: ContextVar = ContextVar("unica_current_actor", default=None)


def unica_home() -> Path:
    return Path(os.environ.get("UNICA_HOME") or "unica-data")


def default_db_url() -> str:
    """``$UNICA_DB``, else SQLite in ``$UNICA_HOME`` (default ``./unica-data``)."""
    url = os.environ.get("UNICA_DB")
    if url:
        return url
    return f"sqlite:///{(unica_home() / 'unica.db').resolve()}"


def _make_engine(url: str) -> Engine:
    try:
        u = make_url(url)
        u.port  # noqa: B018 - a malformed port (e.g. 'host:x') raises ValueError here, not at connect
    except (ArgumentError, ValueError):
        shown = url if "://" not in url else _redact(url)  # no scheme, no credentials to hide
        raise ConfigurationError(
            f"bad database URL {shown!r}: --db / UNICA_DB take a URL such as sqlite:////srv/unica/unica.db "
            "or postgresql+psycopg://user@host/unica") from None
    if u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")
    if u.get_backend_name() == "sqlite":
        engine = create_engine(u, connect_args={"timeout": 60}, poolclass=None)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            conn.exec_driver_sql(conn.get_execution_options().get("unica_begin", "BEGIN"))

        return engine
    if u.get_backend_name() == "postgresql":
        return create_engine(u, pool_pre_ping=True, pool_size=5, max_overflow=10)
    raise ConfigurationError(f"unsupported database {u.get_backend_name()!r} (use sqlite or postgresql)")


def _redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable>"


#: SQLite: one writer at a time per database file in this process. SQLite allows one writer and
#: makes the others wait in its busy handler, which sleeps in steps of up to 100 ms whatever the
#: writer's progress: threads of one process (the service's workers) queue on a lock instead,
#: and wake when the writer commits. (Other processes still meet SQLite's own lock.)
_SQLITE_WRITERS: dict[str, threading.RLock] = {}
_SQLITE_WRITERS_LOCK = threading.Lock()


def _sqlite_writer_lock(database: str) -> threading.RLock:
    with _SQLITE_WRITERS_LOCK:
        return _SQLITE_WRITERS.setdefault(database, threading.RLock())


class Store:
    """The database: transactions and the audit log."""

    def __init__(self, engine: Engine, url: str):
        self.engine = engine
        self.url = url
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        sqlite = engine.dialect.name == "sqlite"
        writer = engine.execution_options(unica_begin="BEGIN IMMEDIATE") if sqlite else engine
        self._writer = writer
        self._write_sessions = sessionmaker(writer, expire_on_commit=False)
        self._writer_lock = (_sqlite_writer_lock(os.path.realpath(engine.url.database or ":memory:")) if sqlite
                             else contextlib.nullcontext())

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def __repr__(self) -> str:
        return f"<Store {_redact(self.url)}>"

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """One read-write transaction: committed on success, rolled back on any exception."""
        with self._writer_lock:
            session = self._write_sessions()
            try:
                yield session
                session.commit()
            except OperationalError as e:
                session.rollback()
                raise StoreError(f"database error: {_first_line(e)}") from None
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()

    @contextlib.contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """One read-write transaction on a plain connection, for Core statements only (the two
        transactions of each issuance): :meth:`write` without an ORM session's bookkeeping.
        Committed on success, rolled back on any exception; :meth:`audit` takes it too."""
        with self._writer_lock:
            try:
                with self._writer.begin() as conn:
                    yield conn
            except OperationalError as e:
                raise StoreError(f"database error: {_first_line(e)}") from None

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A read transaction (nothing is committed)."""
        session = self._sessions()
        try:
            yield session
        except OperationalError as e:
            raise StoreError(f"database error: {_first_line(e)}") from None
        finally:
            session.close()  # ends the transaction; loaded objects stay readable, detached

    def scalar(self, statement):
        """One value read on a plain connection (no ORM session): for the checks on hot paths,
        such as whether any operator exists before each issuance."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(statement).scalar()
        except OperationalError as e:
            raise StoreError(f"database error: {_first_line(e)}") from None

    def rows(self, statement, params: dict | None = None) -> list:
        """The rows of one Core query on a plain connection (no ORM session), for reads on hot
        paths such as an enrollment's."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(statement, params or {}).all()
        except OperationalError as e:
            raise StoreError(f"database error: {_first_line(e)}") from None

    # --- audit ----------------------------------------------------------------------

    def audit(self, session: Session | Connection, event: str, *, ca: str | None = None, target: str | None = None,
              details: dict | None = None, actor: str | None = None) -> "AuditAppended":
        """Append a hash-chained entry to the audit log inside ``session``'s transaction."""
        return append_audit(session, event, ca=ca, target=target, details=details, actor=actor)

    def dispose(self) -> None:
        self.engine.dispose()


def _first_line(e: Exception) -> str:
    text_ = str(getattr(e, "orig", e) or e)
    return text_.strip().splitlines()[0] if text_.strip() else type(e).__name__


def default_actor() -> str:
    """``user@host:pid`` of this process (looked up once per process)."""
    return _actor(os.getpid())


@functools.lru_cache(maxsize=4)
def _actor(pid: int) -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"{user}@{os.uname().nodename}:{pid}" if hasattr(os, "uname") else user


def audit_entry_hash(prev_hash: str, entry_id: int, at, event: str, actor: str, ca_name: str | None,
                     target: str | None, details: dict) -> str:
    """SHA-256 over the previous hash and a canonical JSON form of the entry (its id included,
    so a deleted, inserted or reordered entry breaks the chain)."""
    body = json.dumps(
        {"id": entry_id, "at": at.astimezone(dt.timezone.utc).isoformat(timespec="microseconds"),
         "event": event, "actor": actor, "ca": ca_name, "target": target, "details": details},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str,
    )
    return hashlib.sha256(prev_hash.encode() + b"\n" + body.encode("utf-8")).hexdigest()


_SECRET_WORDS = ("pin", "passphrase", "password", "secret")


def _check_no_secrets(details: dict) -> None:
    for k in details:
        if any(w in str(k).lower() for w in _SECRET_WORDS):
            raise ValueError(f"audit details must not carry secrets (key {k!r})")


class AuditAppended(NamedTuple):
    id: int
    hash: str


#: whether any operator exists (else unica runs as before operators: no roles, no dual control)
ANY_OPERATOR = select(select(m.Operator.id).exists())


def operators_exist(session: Session | Connection) -> bool:
    """Whether any operator exists (the one place this is asked; light: no auth imports, so a
    command without operators, such as ``unica revoke``, never loads the auth services)."""
    return bool(session.execute(ANY_OPERATOR).scalar())


#: key in a connection's ``info``: (the transaction, the entry id and hash it moved the audit head to)
_HEAD_MOVED = "unica_audit_head_moved"


def append_audit(session: Session | Connection, event: str, *, ca: str | None = None, target: str | None = None,
                 details: dict | None = None, actor: str | None = None) -> AuditAppended:
    """Append one entry inside the session's transaction (Core statements: it is on the
    issuance hot path). The head row is locked, so concurrent appends never fork the chain."""
    details = dict(details or {})
    acting = CURRENT_ACTOR.get()
    if acting is not None:
        actor = actor or acting.audit_actor
        for k, v in acting.audit_details().items():
            details.setdefault(k, v)
    _check_no_secrets(details)
    read_head, add_entry, move_head = _audit_statements()
    conn = session if isinstance(session, Connection) else session.connection()
    # the head this transaction moved last (a second append in one transaction -- an enrollment's
    # certificate.issued and enrollment.completed -- need not read it again: the row is locked and
    # written by this transaction); never across a savepoint, which could roll back
    txn, nested = conn.get_transaction(), conn.in_nested_transaction()
    moved = conn.info.get(_HEAD_MOVED)
    if moved is not None and moved[0] is txn and not nested:
        last_id, last_hash = moved[1], moved[2]
    else:
        head = conn.execute(read_head).first()
        if head is None:
            raise StoreError("the audit log's head row is missing (database not migrated, or tampered with)")
        last_id, last_hash = head.last_id, head.last_hash
    entry_id = last_id + 1
    at = m.utcnow()
    who = actor or default_actor()
    digest = audit_entry_hash(last_hash, entry_id, at, event, who, ca, target, details)
    conn.execute(add_entry, {"id": entry_id, "at": at, "event": event, "actor": who, "ca_name": ca, "target": target,
                             "details": details, "prev_hash": last_hash, "hash": digest})
    conn.execute(move_head, {"b_id": entry_id, "b_hash": digest})
    if nested:
        conn.info.pop(_HEAD_MOVED, None)
    else:
        conn.info[_HEAD_MOVED] = (txn, entry_id, digest)
    return AuditAppended(entry_id, digest)


@functools.lru_cache(maxsize=1)
def _audit_statements():
    """The three statements of an append, built once (their compiled forms are then cached)."""
    head_t, entry_t = m.AuditHead.__table__, m.AuditEntry.__table__
    return (select(head_t.c.last_id, head_t.c.last_hash).where(head_t.c.id == 1).with_for_update(),
            insert(entry_t),
            update(head_t).where(head_t.c.id == 1).values(last_id=bindparam("b_id"), last_hash=bindparam("b_hash")))


# --- opening and migrating ---------------------------------------------------------------


def _alembic_config(engine: Engine):
    from alembic.config import Config

    here = Path(__file__).parent / "migrations"
    cfg = Config()
    cfg.set_main_option("script_location", str(here))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(store: Store) -> None:
    """Run the Alembic migrations up to head."""
    from alembic import command

    command.upgrade(_alembic_config(store.engine), "head")


#: the newest migration under migrations/versions: opening a database compares its
#: ``alembic_version`` with this in one query, without loading Alembic (a third of a CLI
#: command's start-up); tests/cli/test_startup.py checks it is Alembic's head
SCHEMA_HEAD = "0011"


def schema_revision(store: Store) -> str | None:
    """The database's schema revision: one query on ``alembic_version`` (None: no such table)."""
    with store.engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except (OperationalError, ProgrammingError) as e:
            if _no_such_table(e):
                return None
            raise


def _no_such_table(e: SQLAlchemyError) -> bool:
    orig = getattr(e, "orig", None)
    return getattr(orig, "sqlstate", None) == "42P01" or "no such table" in str(orig or e).lower()


def head_revision() -> str:
    """The head revision of the migration scripts, as Alembic reads it (loads Alembic)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(Path(__file__).parent / "migrations")).get_current_head()


def _create_private(p: Path) -> None:
    """Create the SQLite file mode 0600 before SQLite does (it would use 0644 under the usual
    umask; its journal and WAL files take the database file's mode). An existing file is left as it is."""
    try:
        os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as e:
        raise StoreError(f"cannot create the database {p}: {e.strerror or e}") from None


#: what :func:`init_check` finds where ``unica init`` would create the database
INIT_NEW, INIT_UNICA, INIT_EMPTY_FILE = "new", "unica", "empty-file"


def init_check(url: str | None = None) -> str:
    """What is at ``url`` before ``unica init`` creates or migrates anything there.

    ``"new"``: nothing (no SQLite file, or a PostgreSQL database with no tables: what a DBA's
    CREATE DATABASE gives); ``"unica"``: a unica database (to migrate); ``"empty-file"``: an
    existing SQLite file of 0 bytes -- a unica database that was truncated or replaced looks
    like this, and starting over in it begins a new audit chain while the old CAs' keys
    remain, so the caller refuses it unless told. A file that is not an SQLite database, or a
    database with tables but no unica schema, is a :class:`StoreError` (nothing is written).
    """
    from sqlalchemy import inspect

    url = url or default_db_url()
    engine = _make_engine(url)
    try:
        if engine.dialect.name == "sqlite":  # read with the standard library, read-only: no WAL switch
            import sqlite3

            path = engine.url.database
            if not path or path == ":memory:":
                return INIT_NEW
            p = Path(path)
            if not p.exists():
                return INIT_NEW
            if p.is_file() and p.stat().st_size == 0:
                return INIT_EMPTY_FILE
            try:
                with p.open("rb") as f:
                    magic = f.read(16)
            except OSError as e:
                raise StoreError(f"cannot read the database {p}: {e.strerror or e}") from None
            if magic != b"SQLite format 3\x00":
                raise StoreError(f"{p} is not an SQLite database: unica init does not write into it "
                                 f"(choose another UNICA_HOME or --db)")
            try:
                conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
                try:
                    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                finally:
                    conn.close()
            except sqlite3.Error as e:
                raise StoreError(f"cannot read the database {p}: {e}") from None
        else:
            with engine.connect() as conn:
                tables = set(inspect(conn).get_table_names())
    except OperationalError as e:
        raise StoreError(f"cannot reach the database {_redact(url)}: {_first_line(e)}") from None
    except SQLAlchemyError as e:
        raise StoreError(f"database error on {_redact(url)}: {_first_line(e)}") from None
    finally:
        engine.dispose()
    if "alembic_version" in tables:
        return INIT_UNICA
    if tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(f"database {_redact(url)} holds other tables ({shown}) and no unica schema: "
                         f"unica init does not write into it (choose another UNICA_HOME or --db)")
    return INIT_NEW


def open_store(url: str | None = None, *, create: bool = False) -> Store:
    """Open the database at ``url`` (default :func:`default_db_url`).

    With ``create``, make the SQLite file's directory and migrate the schema to head;
    without it, refuse a database that is missing or not at the current schema.
    """
    url = url or default_db_url()
    engine = _make_engine(url)
    store = Store(engine, url)
    if engine.dialect.name == "sqlite":
        path = engine.url.database
        if path and path != ":memory:":
            p = Path(path)
            if create:
                try:
                    p.parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise StoreError(f"cannot create the database directory {p.parent}: {e.strerror or e}") from None
            elif not p.exists():
                raise StoreError(f"no unica database at {p} (run 'unica init', or set UNICA_HOME / UNICA_DB)")
            if create:
                _create_private(p)
    try:
        if create:
            upgrade(store)
        else:
            rev = schema_revision(store)
            if rev is None:
                raise StoreError(f"database {_redact(url)} is not initialised (run 'unica init')")
            if rev != SCHEMA_HEAD:
                raise StoreError(f"database {_redact(url)} is at schema {rev}; run 'unica init' to migrate")
    except OperationalError as e:
        raise StoreError(f"cannot reach the database {_redact(url)}: {_first_line(e)}") from None
    except SQLAlchemyError as e:
        raise StoreError(f"database error on {_redact(url)}: {_first_line(e)}") from None
    return store
