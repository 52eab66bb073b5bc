"""Output files of the CLI: checked before any work is done, written atomically.

Every ``--out`` / ``--csr-out`` / output argument goes through :func:`check_output_path`
(or :func:`check_output_dir` for ``--out-dir``) before the command touches a key, a token
or the database, and through :func:`write_atomic` / :func:`atomic_output` when it writes.

* ``-`` is standard output (where a command allows it).
* A missing directory is a usage error (exit 2): unica creates no directories.
* A place that cannot be written (permissions, read-only or pseudo file systems such as
  /proc and /sys) is an operational error (exit 1): :class:`~unica.errors.OutputError`.
* A regular file is replaced atomically: a temporary file in the same directory, fsync,
  ``os.replace``. A reader sees the old content or the new one, never a part; the temporary
  file is removed on failure. An existing special file (``/dev/null``, a FIFO, a terminal)
  is written in place, never replaced.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, Iterator

import click

from unica.errors import InputError, OutputError

STDOUT = "-"


def _is_stdout(path) -> bool:
    return path is None or str(path) == STDOUT


def _target(path) -> Path:
    """The file actually written: a symbolic link is written through (the link stays a link)."""
    p = Path(path)
    return Path(os.path.realpath(p)) if p.is_symlink() else p


def _strerror(e: OSError) -> str:
    return e.strerror or str(e)


def _probe(directory: Path, what: str, path) -> None:
    """Create and remove a file in ``directory``: the only check that holds for root, read-only
    mounts and pseudo file systems alike."""
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".unica-probe-")
    except OSError as e:
        raise OutputError(f"cannot write {what} {path}: cannot create files in {directory}: {_strerror(e)}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def check_output_path(path, what: str = "--out", *, allow_stdout: bool = True, special_ok: bool = True) -> None:
    """Refuse, before any work, an output file that cannot be written.

    ``path`` None or ``-`` is standard output (refused if not ``allow_stdout``). Missing or
    non-directory parent, or ``path`` a directory: :class:`InputError` (exit 2). Not writable:
    :class:`OutputError` (exit 1). ``special_ok=False`` also refuses an existing non-regular
    file (for writers that must rename into place).
    """
    if path is None:
        return
    if str(path) == STDOUT:
        if not allow_stdout:
            raise InputError(f"{what} -: this output cannot go to standard output; give a file name")
        return
    if not str(path):
        raise InputError(f"{what}: empty file name")
    try:
        target = _target(path)
        if target.is_dir():
            raise InputError(f"{what} {path}: is a directory; give a file name")
        parent = target.parent
        if not parent.exists():
            raise InputError(f"{what} {path}: directory {parent} does not exist (unica creates no directories)")
        if not parent.is_dir():
            raise InputError(f"{what} {path}: {parent} is not a directory")
        if target.exists():
            if not target.is_file():
                if not special_ok:
                    raise InputError(f"{what} {path}: not a regular file")
                if not os.access(target, os.W_OK):
                    raise OutputError(f"cannot write {what} {path}: permission denied")
                return
            if not os.access(target, os.W_OK):
                raise OutputError(f"cannot write {what} {path}: the file is read-only")
    except OSError as e:  # stat refused: a directory on the way is not searchable
        raise OutputError(f"cannot write {what} {path}: {_strerror(e)}") from None
    _probe(parent, what, path)


def check_output_dir(path, what: str = "--out-dir") -> None:
    """Refuse, before any work, an output directory that is missing (exit 2) or not writable (exit 1)."""
    if path is None:
        return
    try:
        p = Path(path)
        if not p.exists():
            raise InputError(f"{what} {path}: directory does not exist (unica creates no directories)")
        if not p.is_dir():
            raise InputError(f"{what} {path}: not a directory")
    except OSError as e:
        raise OutputError(f"cannot write {what} {path}: {_strerror(e)}") from None
    _probe(p, what, path)


def _umasked(mode: int) -> int:
    current = os.umask(0)
    os.umask(current)
    return mode & ~current


@contextlib.contextmanager
def atomic_output(path, *, mode: int = 0o644, what: str = "--out") -> Iterator[IO[bytes]]:
    """A binary file to write ``path`` through; it replaces ``path`` only when the block ends
    without an exception. ``path`` None or ``-``: standard output. ``mode`` 0o600 for secrets.

    An :class:`OSError` while writing becomes :class:`OutputError` naming the file.
    """
    if _is_stdout(path):
        try:
            sys.stdout.flush()
            out = click.get_binary_stream("stdout")
            yield out
            out.flush()
        except OSError as e:
            raise OutputError(f"cannot write to standard output: {_strerror(e)}") from None
        return
    try:
        target = _target(path)
        special = target.exists() and not target.is_file() and not target.is_dir()
    except OSError as e:
        raise OutputError(f"cannot write {what} {path}: {_strerror(e)}") from None
    if special:  # /dev/null, a FIFO, a terminal: written in place, never replaced by a file
        try:
            with open(target, "wb") as f:
                yield f
                f.flush()
        except OSError as e:
            raise OutputError(f"cannot write {what} {path}: {_strerror(e)}") from None
        return
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, _umasked(mode))
            f = os.fdopen(fd, "w+b")
        except BaseException:
            os.close(fd)
            raise
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        tmp = None
        _fsync_dir(target.parent)
    except OSError as e:
        raise OutputError(f"cannot write {what} {path}: {_strerror(e)}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (best effort: not every file system lets a directory be fsynced)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path, data: bytes | str, *, mode: int = 0o644, what: str = "--out") -> None:
    """Write ``data`` (text is UTF-8) to ``path`` atomically (see :func:`atomic_output`);
    ``path`` None or ``-``: standard output."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_output(path, mode=mode, what=what) as f:
        f.write(data)
