"""Many-row INSERT and UPDATE at the driver level, for the bulk-issuance hot path.

SQLAlchemy Core spends more time per row preparing parameters than SQLite spends writing
the row. Here the statement is written once per (dialect, table, columns) and run through
``exec_driver_sql`` (one ``executemany`` on the DBAPI cursor, inside the caller's
transaction); each value is converted by its column type's own bind processor, so what is
stored is exactly what Core would store. SQLite and PostgreSQL (psycopg) only.
"""

from __future__ import annotations

import functools

from sqlalchemy import JSON, DateTime, Table


def _placeholder(dialect, column) -> str:
    p = "?" if dialect.paramstyle == "qmark" else "%s"
    if dialect.name == "postgresql" and isinstance(column.type, JSON):
        p += "::json"
    return p


@functools.lru_cache(maxsize=64)
def _prepared(dialect, table: Table, kind: str, columns: tuple[str, ...], keys: tuple[str, ...], where: str):
    cols = [table.c[c] for c in columns + keys]
    # the dialect's own implementation of each type (e.g. SQLite's DATETIME string format), as
    # Core's compiled statements use it; a batch shares its few timestamps, converted once each
    procs = tuple(functools.lru_cache(maxsize=1024)(p) if p is not None and _is_datetime(c) else p
                  for c, p in ((c, c.type.dialect_impl(dialect).bind_processor(dialect)) for c in cols))
    q = dialect.identifier_preparer.quote
    if kind == "insert":
        sql = (f"INSERT INTO {q(table.name)} ({', '.join(q(c) for c in columns)}) "
               f"VALUES ({', '.join(_placeholder(dialect, c) for c in cols)})")
    else:
        sets = ", ".join(f"{q(c.name)} = {_placeholder(dialect, c)}" for c in cols[:len(columns)])
        cond = " AND ".join(f"{q(c.name)} = {_placeholder(dialect, c)}" for c in cols[len(columns):])
        sql = f"UPDATE {q(table.name)} SET {sets} WHERE {cond}" + (f" AND {where}" if where else "")
    return sql, procs


def _is_datetime(column) -> bool:
    t = column.type
    return isinstance(getattr(t, "impl_instance", t), DateTime)


def _run(conn, sql: str, procs: tuple, rows: list[tuple]) -> int:
    active = [(i, p) for i, p in enumerate(procs) if p is not None]
    params = []
    for row in rows:
        row = list(row)
        for i, p in active:
            v = row[i]
            if v is not None:
                row[i] = p(v)
        params.append(tuple(row))
    result = conn.exec_driver_sql(sql, params)
    return result.rowcount if conn.dialect.supports_sane_multi_rowcount else -1


def insert_many(conn, table: Table, columns: tuple[str, ...], rows: list[tuple]) -> int:
    """INSERT one row per tuple (values in ``columns`` order)."""
    sql, procs = _prepared(conn.dialect, table, "insert", columns, (), "")
    return _run(conn, sql, procs, rows)


def update_many(conn, table: Table, columns: tuple[str, ...], keys: tuple[str, ...], rows: list[tuple],
                where: str = "") -> int:
    """``UPDATE table SET columns... WHERE keys... [AND where]`` once per tuple (the values of
    ``columns`` then of ``keys``); return the rows changed in all (-1 if the driver cannot tell).
    ``where`` is fixed SQL text, never data."""
    sql, procs = _prepared(conn.dialect, table, "update", columns, keys, where)
    return _run(conn, sql, procs, rows)
