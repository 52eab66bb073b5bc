"""Backing up and restoring a unica home: the service entry points (the mechanics are in
:mod:`unica.store.backup`; authorization sits here, above the store, as the layers want)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

from unica.store import Store
from unica.store.backup import DEFAULT_CRL_GAP, BackupResult, RestoreResult, restore_backup, write_backup

__all__ = ["backup_home", "restore_home", "BackupResult", "RestoreResult", "DEFAULT_CRL_GAP"]


def backup_home(store: Store, out: str | os.PathLike, *, home: Path, profiles_dir: Path | None = None,
                auth=None, progress: Callable[[str], None] | None = None) -> BackupResult:
    """A consistent copy of the database and the home's configuration in the directory ``out``
    (see :func:`unica.store.backup.write_backup`); audited as ``backup.created``."""
    from unica.auth import Operation, authorized

    params = {"out": str(Path(out).resolve())}  # what the operator signs
    with authorized(store, Operation("backup.create", params=params), auth) as actor:
        return write_backup(store, out, home=home, profiles_dir=profiles_dir, actor=actor.audit_actor,
                            audit_details=actor.audit_details(), progress=progress)


def restore_home(directory: str | os.PathLike, *, url: str | None, home: Path, profiles_dir: Path | None = None,
                 crl_gap: int = DEFAULT_CRL_GAP, published_crls: Iterable[str | os.PathLike] = (),
                 progress: Callable[[str], None] | None = None) -> RestoreResult:
    """Restore a backup into a database that holds no CA (see
    :func:`unica.store.backup.restore_backup`); audited as ``home.restored``.

    No operator is checked: the target holds none (they come back with the database), and
    whoever can write the fresh database and home can restore; the backup's integrity is
    checked against its manifest, and the event is in the restored audit chain."""
    return restore_backup(directory, url=url, home=home, profiles_dir=profiles_dir, crl_gap=crl_gap,
                          published_crls=published_crls, progress=progress)
