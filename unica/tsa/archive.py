"""The archive of issued tokens: one ``tsa_tokens`` row per token, written in batches.

Tokens are handed to :meth:`Archive.add` as they are issued (an append under a lock) and
written by a background thread every ``interval`` seconds (200 ms) or as soon as ``batch``
(256) are waiting, each batch one transaction; :meth:`Archive.close` writes what is left.
What a crash loses: the rows of tokens issued in the last ``interval`` before it (the
tokens themselves were answered; a dispute over one is settled with the token, which is
signed). A batch the database refuses is kept and retried, up to ``max_pending`` rows.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading

from unica.errors import UnicaError
from unica.store import models as m

log = logging.getLogger("unica.tsa.archive")

_UTC = _dt.timezone.utc

__all__ = ["Archive", "find_token", "TokenNotArchived"]


class TokenNotArchived(UnicaError):
    """No archived token has that serial."""


class Archive:
    def __init__(self, store, unit: str, *, interval: float = 0.2, batch: int = 256, max_pending: int = 100_000):
        self.store = store
        self.unit = unit
        self.interval = interval
        self.batch = batch
        self.max_pending = max_pending
        self._pending: list[dict] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0
        #: called in the flusher thread after each flush (e.g. a unit-status refresh)
        self.tick = None

    def add(self, issued) -> None:
        """Queue one token's record (an :class:`unica.tsa.token.Issued`); the row is made when written."""
        with self._lock:
            self._pending.append(issued)
            n = len(self._pending)
        if n >= self.batch:
            self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            return

        def loop():
            while not self._stop.is_set():
                self._wake.wait(self.interval)
                self._wake.clear()
                self.flush()
                if self.tick is not None:
                    try:
                        self.tick()
                    except Exception:
                        log.exception("TSA background check failed")

        self._thread = threading.Thread(target=loop, name="unica-tsa-archive", daemon=True)
        self._thread.start()

    def _row(self, issued) -> dict:
        return {"serial": format(issued.serial, "x"), "unit": self.unit, "gen_time": issued.gen_time,
                "imprint_alg": issued.imprint_alg, "imprint_hex": issued.imprint.hex(), "policy": issued.policy,
                "nonce": issued.nonce}

    def flush(self) -> int:
        with self._lock:
            queued, self._pending = self._pending, []
        if not queued:
            return 0
        rows = [r if isinstance(r, dict) else self._row(r) for r in queued]
        try:
            with self.store.write() as s:
                _insert(s, rows)
        except Exception as e:
            log.warning("archiving %d time-stamp tokens failed (kept for the next flush): %s", len(rows), e)
            with self._lock:
                self._pending[:0] = rows
                if len(self._pending) > self.max_pending:
                    lost = len(self._pending) - self.max_pending
                    del self._pending[:lost]
                    log.error("the token archive dropped %d records (the database refuses writes)", lost)
            return 0
        self.written += len(rows)
        return len(rows)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.flush()


_SQLITE_INSERT = ("INSERT INTO tsa_tokens (serial, unit, gen_time, imprint_alg, imprint_hex, policy, nonce) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?)")


def _insert(session, rows: list[dict]) -> None:
    """One batch. On SQLite through the driver's executemany, with gen_time written as
    SQLAlchemy writes a UTCDateTime there (naive UTC, microseconds): SQLAlchemy's bulk insert
    cost ~55 us a row, a third of a token's time in-process; elsewhere SQLAlchemy's insert."""
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(_SQLITE_INSERT, [
            (r["serial"], r["unit"], r["gen_time"].astimezone(_UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
             r["imprint_alg"], r["imprint_hex"], r["policy"], 1 if r["nonce"] else 0) for r in rows])
        return
    from sqlalchemy import insert

    session.execute(insert(m.TSAToken), rows)


def find_token(store, serial: str) -> list[m.TSAToken]:
    """Archive rows for a token serial (hex, ``0x`` / colons tolerated, or decimal with ``--decimal``)."""
    from sqlalchemy import select

    from unica.errors import InputError

    text = serial.strip().lower().replace(":", "")
    if text.startswith("0x"):
        text = text[2:]
    if not text or any(c not in "0123456789abcdef" for c in text) or len(text) > 48:
        raise InputError(f"token serial {serial!r} is not a hexadecimal number")
    text = text.lstrip("0") or "0"
    with store.read() as s:
        rows = s.scalars(select(m.TSAToken).where(m.TSAToken.serial == text).order_by(m.TSAToken.id)).all()
        s.expunge_all()
        return list(rows)
