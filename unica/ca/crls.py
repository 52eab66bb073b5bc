"""The CRLs a CA has issued, as the store records them: list them, find one, and say where it
was published and whether the file there still holds it.

The database keeps each CRL's record (number, base or delta, shard, this/next update, entry
count, SHA-256 and the file it was written to), not its bytes. The file of an older CRL is
normally overwritten by the next one of the same kind (``CA.crl``, ``CA-delta.crl``...), so
:func:`find_crl` reads the file and reports ``file_state``:

* ``current``: the file holds exactly this CRL (its SHA-256 matches);
* ``replaced``: the file now holds something else (usually a newer CRL);
* ``missing``: there is no such file (moved, deleted, or on another node);
* ``unpublished``: the CRL was signed but never written (a higher-numbered one had been
  published to the same file first).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, replace as _replace

from unica.errors import InputError, RevocationError

__all__ = ["CRLRecord", "list_crls", "find_crl", "ca_crl_state"]


@dataclass(frozen=True)
class CRLRecord:
    ca: str
    number: int
    is_delta: bool
    base_number: int | None
    shard: int | None
    this_update: dt.datetime
    next_update: dt.datetime
    entries: int
    sha256: str | None
    path: str | None
    #: where relying parties fetch it: the CA's CRL URL (delta CRL URL for a delta), {shard} filled in
    url: str | None
    #: a newer CRL of the same kind and shard exists
    superseded: bool
    #: set by :func:`find_crl` (current | replaced | missing | unpublished); None when not looked at
    file_state: str | None = None
    #: the file's bytes when ``file_state`` is ``current`` (DER)
    der: bytes | None = None

    @property
    def kind(self) -> str:
        return "delta" if self.is_delta else "base"

    def overdue(self, now: dt.datetime | None = None) -> bool:
        """Its nextUpdate has passed and no newer CRL of its kind replaced it."""
        return not self.superseded and self.next_update <= (now or dt.datetime.now(dt.timezone.utc))

    def to_dict(self) -> dict:
        """For --json: keys without a value are left out."""
        d = {"ca": self.ca, "number": self.number, "kind": self.kind, "base_number": self.base_number,
             "shard": self.shard, "this_update": self.this_update.isoformat(),
             "next_update": self.next_update.isoformat(), "entries": self.entries, "sha256": self.sha256,
             "path": self.path, "url": self.url, "superseded": self.superseded, "overdue": self.overdue(),
             "file_state": self.file_state}
        return {k: v for k, v in d.items() if v is not None}


def _url(template: str | None, shard: int | None) -> str | None:
    if not template:
        return None
    return template.replace("{shard}", str(shard)) if shard is not None else template


def _record(r, ca, newest: int) -> CRLRecord:
    return CRLRecord(
        ca=ca.name, number=r.number, is_delta=r.is_delta, base_number=r.base_number, shard=r.shard,
        this_update=r.this_update, next_update=r.next_update, entries=r.entries, sha256=r.sha256, path=r.path,
        url=_url(ca.delta_crl_url if r.is_delta else ca.crl_url, r.shard), superseded=newest > r.number)


def _newest(session, ca_id: int | None = None) -> dict[tuple, int]:
    """The newest CRL number of each (CA id, delta, shard)."""
    from sqlalchemy import func, select

    from unica.store import models as m

    q = select(m.CRL.ca_id, m.CRL.is_delta, m.CRL.shard, func.max(m.CRL.number)).group_by(
        m.CRL.ca_id, m.CRL.is_delta, m.CRL.shard)
    if ca_id is not None:
        q = q.where(m.CRL.ca_id == ca_id)
    return {(c, bool(d), sh): n for c, d, sh, n in session.execute(q)}


def list_crls(store, *, ca: str | None = None, latest: bool = False, limit: int | None = None) -> list[CRLRecord]:
    """The recorded CRLs, by CA name then newest first (``latest``: only the newest of each kind
    and shard per CA). Filtering is done by the database."""
    from sqlalchemy import func, select, tuple_

    from unica.ca.records import get_ca_row
    from unica.store import models as m

    with store.read() as s:
        ca_id = get_ca_row(s, ca).id if ca is not None else None
        q = select(m.CRL, m.CA).join(m.CA, m.CA.id == m.CRL.ca_id)
        if ca_id is not None:
            q = q.where(m.CRL.ca_id == ca_id)
        if latest:
            # CRL numbers are unique per CA (one counter for base, delta and every shard)
            top = (select(m.CRL.ca_id, func.max(m.CRL.number).label("n"))
                   .group_by(m.CRL.ca_id, m.CRL.is_delta, m.CRL.shard).subquery())
            q = q.where(tuple_(m.CRL.ca_id, m.CRL.number).in_(select(top.c.ca_id, top.c.n)))
        q = q.order_by(m.CA.name, m.CRL.number.desc())
        if limit is not None:
            q = q.limit(limit)
        rows = s.execute(q).all()
        newest = _newest(s, ca_id)
        return [_record(r, c, newest[(r.ca_id, bool(r.is_delta), r.shard)]) for r, c in rows]


def find_crl(store, ca: str, number: int | None = None, *, delta: bool = False, shard: int | None = None,
             max_bytes: int | None = None) -> CRLRecord:
    """CRL ``number`` of CA ``ca`` (else its newest base CRL, or newest delta with ``delta``), with
    the state of its file and, when the file still holds it, its bytes (a bounded read)."""
    from sqlalchemy import select

    from unica.ca.records import get_ca_row
    from unica.store import models as m

    with store.read() as s:
        ca_row = get_ca_row(s, ca)
        q = select(m.CRL).where(m.CRL.ca_id == ca_row.id)
        if number is not None:
            q = q.where(m.CRL.number == number)
        else:
            q = q.where(m.CRL.is_delta.is_(delta))
        if shard is not None:
            q = q.where(m.CRL.shard == shard)
        rows = list(s.scalars(q.order_by(m.CRL.number.desc()).limit(2 if number is not None else 1)))
        if not rows:
            what = (f"no CRL number {number}" if number is not None
                    else f"no {'delta' if delta else 'base'} CRL yet")
            raise RevocationError(f"CA {ca!r} has {what}{'' if shard is None else f' for shard {shard}'} "
                                  f"(see 'unica crl list --ca {ca}')")
        if len(rows) > 1:  # one number per CA except for a sharded CA's shards (uq: ca, number, shard)
            raise InputError(f"CA {ca!r} has CRL number {number} for several shards; give --shard")
        row = rows[0]
        record = _record(row, ca_row, _newest(s, ca_row.id)[(row.ca_id, bool(row.is_delta), row.shard)])
    if not record.path:
        return _replace(record, file_state="unpublished")
    return _with_file(record, max_bytes or MAX_LOADED_CRL)


#: a recorded CRL's file is loaded (to be shown) up to this size; a larger one is only hashed
MAX_LOADED_CRL = 256 * 1024 * 1024


def _with_file(record: CRLRecord, max_bytes: int) -> CRLRecord:
    """The record with the state of its file: hashed in chunks (a million-entry CRL may be large),
    loaded only when it holds this CRL and is at most ``max_bytes``."""
    import os

    h = hashlib.sha256()
    try:
        with open(record.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            while chunk := f.read(1 << 20):
                h.update(chunk)
            if h.hexdigest() != record.sha256:
                return _replace(record, file_state="replaced")
            if size > max_bytes:
                return _replace(record, file_state="current")
            f.seek(0)
            return _replace(record, file_state="current", der=f.read(max_bytes + 1)[:max_bytes])
    except FileNotFoundError:
        return _replace(record, file_state="missing")
    except OSError:  # a directory, no permission...: it cannot be shown to hold this CRL
        return _replace(record, file_state="replaced" if os.path.exists(record.path) else "missing")


def ca_crl_state(session, ca_row) -> dict:
    """What ``unica ca show`` says of a CA's CRLs: the number and next update of its newest base
    CRL and of its newest delta CRL, and whether a delta CRL URL is configured (base CRLs then
    name it as their Freshest CRL). Keys without a value are left out."""
    from sqlalchemy import select

    from unica.store import models as m

    out: dict = {}
    for delta, prefix in ((False, "crl"), (True, "delta_crl")):
        row = session.execute(select(m.CRL.number, m.CRL.next_update)
                              .where(m.CRL.ca_id == ca_row.id, m.CRL.is_delta.is_(delta))
                              .order_by(m.CRL.number.desc()).limit(1)).first()
        if row is not None:
            out[f"{prefix}_number"] = row.number
            out[f"{prefix}_next_update"] = row.next_update.isoformat()
    out["delta_crl_configured"] = bool(ca_row.delta_crl_url)
    return out
