"""CA rows by name: what the CA services and the OCSP responder both look up (no transactions here)."""

from __future__ import annotations

from sqlalchemy import select

from unica.errors import CANotFound
from unica.store import models as m

__all__ = ["get_ca_row"]


def get_ca_row(session, name: str) -> m.CA:
    """The CA named ``name`` in this session; :class:`CANotFound` if there is none."""
    row = session.execute(select(m.CA).where(m.CA.name == name)).scalar_one_or_none()
    if row is None:
        raise CANotFound(f"no CA named {name!r} (see 'unica ca list')")
    return row
