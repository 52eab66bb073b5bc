"""CA rows by name: what the CA services and the OCSP responder both look up (no transactions here)."""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import select

from unica.errors import CANotFound
from unica.store import models as m

__all__ = ["get_ca_row", "ca_row_info", "list_cas"]


def get_ca_row(session, name: str) -> m.CA:
    """The CA named ``name`` in this session; :class:`CANotFound` if there is none."""
    row = session.execute(select(m.CA).where(m.CA.name == name)).scalar_one_or_none()
    if row is None:
        raise CANotFound(f"no CA named {name!r} (see 'unica ca list')")
    return row


def ca_row_info(row: m.CA, parent_name: str | None) -> dict:
    """What ``ca list`` / ``ca show`` say of a CA row (database columns only: no certificate
    parsing, so listing CAs stays cheap)."""
    return {
        "name": row.name, "status": row.status, "parent": parent_name, "subject": row.subject_text,
        "key_uri": row.key_uri,
        "not_before": row.not_before.isoformat() if row.not_before else None,
        "not_after": row.not_after.isoformat() if row.not_after else None,
        "ski": row.ski.hex() if row.ski else None,
        "fingerprint_sha256": hashlib.sha256(row.cert_der).hexdigest() if row.cert_der else None,
        "crl_url": row.crl_url, "delta_crl_url": row.delta_crl_url, "crl_shards": row.crl_shards,
        "ocsp_url": row.ocsp_url,
        "ca_issuers_url": row.ca_issuers_url, "profiles": list(row.profiles or []),
        "expired": bool(row.not_after and row.not_after <= dt.datetime.now(dt.timezone.utc)),
    }


def list_cas(store) -> list[dict]:
    """Every CA, in creation order, as :func:`ca_row_info` gives it."""
    with store.read() as s:
        rows = s.execute(select(m.CA).order_by(m.CA.id)).scalars().all()
        names = {r.id: r.name for r in rows}
        return [ca_row_info(r, names.get(r.parent_id)) for r in rows]
