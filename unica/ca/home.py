"""``unica init`` over an existing unica database that has operators: operation ``home.init``.

Initialising migrates the schema and records ``home.initialised``; on a database whose CA is
run by operators that is an admin's act (:mod:`unica.auth`), like every other change. A new
database, or one from before operators existed (no ``operators`` table, or an empty one),
is initialised as before.
"""

from __future__ import annotations

import contextlib
from typing import Iterator


def _has_operator_table(url: str) -> bool:
    from sqlalchemy import inspect

    from unica.store.db import _make_engine

    engine = _make_engine(url)
    try:
        with engine.connect() as c:
            return "operators" in inspect(c).get_table_names()
    finally:
        engine.dispose()


@contextlib.contextmanager
def init_authorized(url: str | None = None, auth=None, *, params: dict | None = None) -> Iterator[object]:
    """Around ``unica init``'s work on the database at ``url``: once that database has operators,
    operation ``home.init`` (an admin's; ``auth``: their card, see :mod:`unica.auth`), and the
    audit entries written meanwhile name the operator. Raises ``NotAuthorized`` (exit 3,
    audited) before anything is written. Yields the actor (None: nothing to check)."""
    from unica.store.db import INIT_UNICA, Store, _make_engine, _redact, default_db_url, init_check

    url = url or default_db_url()
    if init_check(url) != INIT_UNICA or not _has_operator_table(url):
        yield None
        return
    from unica.auth import Operation, authorized

    store = Store(_make_engine(url), url)
    try:
        op = Operation("home.init", params={"db": _redact(url), **(params or {})})
        with authorized(store, op, auth) as actor:
            yield actor
    finally:
        store.dispose()
