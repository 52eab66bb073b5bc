"""Alembic environment: the engine comes from unica (``config.attributes['engine']``).

On SQLite, foreign-key enforcement is off while migrations run (batch mode rebuilds a table by
copy, drop and rename, which an enforced foreign key would refuse or cascade) and the whole
database is checked with ``PRAGMA foreign_key_check`` before the migration commits -- the
procedure the SQLite documentation gives for schema changes.
"""

from alembic import context

from unica.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes["engine"]
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        raw = connection.connection.driver_connection if sqlite else None
        if sqlite:
            raw.execute("PRAGMA foreign_keys=OFF")  # outside any transaction, where it takes effect
        try:
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=sqlite)
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration left rows breaking foreign keys: {broken[:5]}")
            connection.commit()
        finally:
            if sqlite:
                raw.execute("PRAGMA foreign_keys=ON")


run_migrations_online()
