"""The audit log under joint operation: sealing is an auditor's (or admin's) act, and the
entries' details are for auditors and admins.

:mod:`unica.store.audit` reads, verifies and seals the chain; this module puts the operator
check (:mod:`unica.auth`) in front of what it changes or discloses:

- :func:`seal`: operation ``audit.seal`` (auditor or admin).
- :func:`entries`: once operators exist, the entries come without their details unless an
  auditor or admin proves possession of their card (operation ``audit.read``). The event,
  time, actor, CA and target stay visible to everyone, as does ``unica audit verify``.
With no operator in the database, both behave as before operators existed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from unica.store.db import Store


@dataclass(frozen=True)
class EntryView:
    """An audit entry without its details (what a reader who is not an auditor or admin sees)."""

    id: int
    at: dt.datetime
    event: str
    actor: str | None
    ca_name: str | None
    target: str | None
    hash: str
    prev_hash: str
    details: None = None


def seal(store: Store, sign, public_key, key_uri: str, *, auth=None):
    """:func:`unica.store.audit.seal_audit` as operation ``audit.seal`` (see :mod:`unica.auth`)."""
    from unica.auth import Operation, authorized
    from unica.store.audit import seal_audit

    with authorized(store, Operation("audit.seal", params={"key": key_uri}), auth):
        return seal_audit(store, sign, public_key, key_uri)


def details_allowed(store: Store, auth=None) -> bool:
    """Whether the reader may see the entries' details: yes with no operator in the database;
    else only an auditor or admin (``auth``: their card; a card of anyone else is refused,
    exit 3, audited)."""
    from unica.auth import Operation, authorize
    from unica.store.db import operators_exist

    if auth is None:
        with store.read() as s:
            return not operators_exist(s)
    authorize(store, Operation("audit.read"), auth)
    return True


def entries(store: Store, *, auth=None, **filters) -> tuple[list, bool]:
    """(entries, whether their details are included): :func:`unica.store.audit.audit_entries`
    with ``filters``, the details left out unless :func:`details_allowed`."""
    from unica.store.audit import audit_entries

    full = details_allowed(store, auth)
    rows = audit_entries(store, **filters)
    if full:
        return rows, True
    return [EntryView(e.id, e.at, e.event, e.actor, e.ca_name, e.target, e.hash, e.prev_hash) for e in rows], False
