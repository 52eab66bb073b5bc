"""Finishing what a killed process left: abandoned issuance intents and half-written CRL files.

Issuance records its intent (a ``pending`` row with the exact TBSCertificate) before the
one real signature and stores the signed certificate afterwards. A process killed between
the two leaves a ``pending`` row: the signature, if it was made at all, never left the
process (the certificate is written out only after it is stored), so the intent is rolled
back -- marked ``failed`` and audited. Revocations are single transactions and need no
recovery; a CRL whose number was reserved but never written leaves a gap in the sequence
(never a reuse) and perhaps a temporary file, removed here. An OCSP pre-signing lease held
by a process of this host that is gone is released, so the next refresher need not wait
for it to expire.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update

from unica.store import models as m

#: an intent older than this is abandoned (an issuance takes milliseconds)
DEFAULT_GRACE = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class RecoveryReport:
    abandoned: tuple[str, ...]
    removed_files: tuple[str, ...]
    released_leases: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"abandoned_intents": list(self.abandoned), "removed_files": list(self.removed_files),
                "released_leases": list(self.released_leases)}


def recover(store, *, older_than: dt.timedelta = DEFAULT_GRACE, crl_dir: Path | None = None,
            now: dt.datetime | None = None, auth=None) -> RecoveryReport:
    """Roll back abandoned issuance intents, remove dead processes' temporary CRL files and
    release their OCSP pre-signing leases.

    ``auth``: the operator acting (see :mod:`unica.auth`): once operators exist, operation
    ``recover``, an admin's."""
    from unica.auth import Operation, authorized

    op = Operation("recover", params={"older_than_seconds": older_than.total_seconds(),
                                      "crl_dir": str(crl_dir) if crl_dir is not None else None})
    with authorized(store, op, auth):
        return _recover(store, older_than=older_than, crl_dir=crl_dir, now=now)


def _recover(store, *, older_than: dt.timedelta, crl_dir: Path | None, now: dt.datetime | None) -> RecoveryReport:
    now = now or m.utcnow()
    c = m.Certificate
    abandoned: list[str] = []
    with store.write() as s:
        rows = s.execute(select(c.id, c.serial, m.CA.name).join(m.CA, m.CA.id == c.ca_id)
                         .where(c.status == "pending", c.created_at <= now - older_than)
                         .with_for_update(of=c)).all()
        if rows:
            s.execute(update(c).where(c.id.in_([r.id for r in rows]), c.status == "pending")
                      .values(status="failed", updated_at=now))
            by_ca: dict[str, list[str]] = {}
            for r in rows:
                by_ca.setdefault(r.name, []).append(r.serial)
            for ca, serials in by_ca.items():
                store.audit(s, "certificate.intent-abandoned", ca=ca, target=",".join(serials[:20]),
                            details={"count": len(serials), "serials": serials,
                                     "reason": "process stopped between recording the intent and storing"})
            abandoned = [r.serial for r in rows]
    removed = []
    directory = crl_dir
    if directory is None:
        from unica.store import unica_home

        directory = unica_home() / "crl"
    if directory.is_dir():
        for p in directory.glob("*.tmp*"):
            pid = p.name.rsplit(".tmp", 1)[-1].split("-", 1)[0]  # NAME.tmp<pid>-<random>
            if pid.isdigit() and _alive(int(pid)):
                continue
            p.unlink(missing_ok=True)
            removed.append(str(p))
    return RecoveryReport(tuple(abandoned), tuple(removed), tuple(_release_dead_leases(store)))


def _release_dead_leases(store) -> list[str]:
    """Drop the OCSP pre-signing leases (``host:pid:thread``) held by dead processes of this host."""
    host = socket.gethostname()
    released = []
    with store.write() as s:
        for ca in s.scalars(select(m.CA).with_for_update()).all():
            lease = (ca.settings or {}).get("ocsp_presign_lease") or {}
            h, _, rest = str(lease.get("holder") or "").partition(":")
            pid = rest.split(":", 1)[0]
            if h != host or not pid.isdigit() or _alive(int(pid)):
                continue
            settings = dict(ca.settings)
            settings.pop("ocsp_presign_lease")
            ca.settings = settings
            store.audit(s, "ocsp.lease-released", ca=ca.name, target=lease["holder"],
                        details={"reason": "the process holding the pre-signing lease is gone"})
            released.append(ca.name)
    return released


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
