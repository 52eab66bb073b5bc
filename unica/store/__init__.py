"""The database: SQLAlchemy models, Alembic migrations, transactions and the audit log.

>>> store = open_store(create=True)          # SQLite under $UNICA_HOME, or $UNICA_DB
>>> with store.write() as s:                 # one transaction
...     store.audit(s, "ca.created", ca="root")
"""

from unica.store import models
from unica.store.db import (
    GENESIS_HASH,
    Store,
    append_audit,
    audit_entry_hash,
    default_db_url,
    open_store,
    unica_home,
)

__all__ = ["models", "Store", "open_store", "default_db_url", "unica_home", "append_audit",
           "audit_entry_hash", "GENESIS_HASH"]
