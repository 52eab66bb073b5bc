"""Bounded reads of files, pipes and standard input.

Every file unica reads goes through :func:`read_limited`: at most ``limit + 1`` bytes are ever
read (in chunks), so ``/dev/zero``, a FIFO fed forever or an endless stdin costs at most the
limit in memory and fails with :class:`unica.errors.MalformedInput` ("<what> <path>: larger
than N bytes"). A regular file whose size is already known to be over the limit is refused
without reading it.

This module imports nothing of unica but :mod:`unica.errors`: both the library
(:mod:`unica.verify`) and the CLI use it.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from typing import IO, Union

from unica.errors import InputError, MalformedInput, UnicaError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: certificate files (PEM may hold a bundle: trust anchors, intermediates, a chain)
MAX_CERTIFICATE = 8 * MiB
#: a PKCS#10 request (the CA refuses larger ones anyway: unica.ca.request.MAX_CSR_BYTES)
MAX_CSR = 64 * KiB
MAX_CRL = 16 * MiB
MAX_OCSP_RESPONSE = 1 * MiB
#: a CMS / CAdES signature (an attached one carries its content)
MAX_SIGNATURE = 256 * MiB
MAX_PDF = 256 * MiB
#: signed content (detached data, files to sign); UNICA_MAX_DATA_SIZE or --max-data-size change it
MAX_DATA = 256 * MiB
#: TOML files: profiles, config.toml
MAX_TEXT = 1 * MiB
MAX_PUBLIC_KEY = 64 * KiB
#: anything else
MAX_DEFAULT = 16 * MiB

DATA_SIZE_ENV = "UNICA_MAX_DATA_SIZE"

_CHUNK = 1 * MiB

Source = Union[str, "os.PathLike[str]", IO[bytes]]


def label(src: Source, stdin: bool = True) -> str:
    """How a source is named in messages: its path, or ``from standard input``."""
    if stdin and isinstance(src, str) and src == "-":
        return "from standard input"
    if isinstance(src, (str, os.PathLike)):
        return os.fsdecode(src)
    return str(getattr(src, "name", None) or "stream")


def read_limited(src: Source, limit: int, what: str, *, stdin: bool = False,
                 unreadable: type[UnicaError] = InputError) -> bytes:
    """All bytes of ``src`` if there are at most ``limit`` of them.

    ``src``: a path (``"-"`` is standard input when ``stdin`` is true), or a binary file
    object (read from its current position; not closed). At most ``limit + 1`` bytes are read.
    Raises :class:`MalformedInput` ("<what> <src>: larger than <limit> bytes") when there
    are more, and ``unreadable`` ("<what> <src>: cannot read: ...") when the file cannot be
    opened or read.
    """
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise TypeError("limit must be a non-negative int")
    name = f"{what} {label(src, stdin)}"
    try:
        if stdin and isinstance(src, str) and src == "-":
            stream = getattr(sys.stdin, "buffer", None)
            if stream is None:
                raise unreadable(f"{name}: cannot read: there is no standard input")
            return _read(stream, limit, name)
        if isinstance(src, (str, os.PathLike)):
            with open(src, "rb") as f:
                return _read(f, limit, name)
        if hasattr(src, "read"):
            return _read(src, limit, name)
    except OSError as e:
        raise unreadable(f"{name}: cannot read: {e.strerror or e}") from None
    raise TypeError(f"{what}: expected a path, '-' or a binary file object, not {type(src).__name__}")


def _read(f: IO[bytes], limit: int, name: str) -> bytes:
    try:
        st = os.fstat(f.fileno())
    except (AttributeError, OSError, ValueError):
        st = None
    if st is not None and stat.S_ISREG(st.st_mode) and st.st_size > limit:
        try:
            pos = f.tell()
        except (AttributeError, OSError, ValueError):
            pos = 0
        if st.st_size - pos > limit:
            raise _too_large(name, limit)
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = f.read(min(_CHUNK, limit + 1 - total))
        if not chunk:
            break
        if not isinstance(chunk, bytes):
            chunk = bytes(chunk)
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:
        chunks.clear()
        raise _too_large(name, limit)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(name: str, limit: int) -> MalformedInput:
    return MalformedInput(f"{name}: larger than {limit} bytes")


class LimitedReader:
    """A binary file object over ``f`` that raises :class:`MalformedInput` as soon as more
    than ``limit`` bytes come out of it: for streaming consumers (hashing a file to sign)."""

    def __init__(self, f: IO[bytes], limit: int, what: str, src: Source | None = None):
        self._f = f
        self._limit = limit
        self._left = limit + 1
        self._name = f"{what} {label(src if src is not None else f)}"
        self.name = getattr(f, "name", None)

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            raise _too_large(self._name, self._limit)
        want = self._left if n is None or n < 0 else min(n, self._left)
        data = self._f.read(want)
        self._left -= len(data)
        if self._left <= 0:
            raise _too_large(self._name, self._limit)
        return data

    def readable(self) -> bool:
        return True


# --- limits by kind ------------------------------------------------------------------

_SIZE = re.compile(r"\s*(\d+)\s*([kmgt]?)(i?b?)\s*", re.I)
_UNITS = {"": 1, "k": KiB, "m": MiB, "g": GiB, "t": 1024 * GiB}


def parse_size(text: str) -> int:
    """``1048576``, ``64K``, ``256M``, ``1G`` (also KiB/MiB/GiB; binary multiples) -> bytes."""
    m = _SIZE.fullmatch(str(text))
    if not m or (m.group(3) and not m.group(2) and m.group(3).lower() != "b"):
        raise InputError(f"bad size {text!r} (e.g. 1048576, 64K, 256M, 1G)")
    n = int(m.group(1)) * _UNITS[m.group(2).lower()]
    if n <= 0:
        raise InputError(f"bad size {text!r}: must be positive")
    return n


def data_limit(override: int | str | None = None) -> int:
    """The limit on signed content: ``override``, else $UNICA_MAX_DATA_SIZE, else MAX_DATA."""
    if override is not None:
        return override if isinstance(override, int) else parse_size(override)
    env = os.environ.get(DATA_SIZE_ENV)
    if env:
        try:
            return parse_size(env)
        except InputError as e:
            raise InputError(f"{DATA_SIZE_ENV}: {e}") from None
    return MAX_DATA


def limit_for(what: str) -> int:
    """The limit for a kind of input named in messages (``"CRL"``, ``"trust anchor"``...)."""
    w = what.lower()
    if "ocsp" in w:
        return MAX_OCSP_RESPONSE
    if "crl" in w:
        return MAX_CRL
    if "csr" in w or "request" in w:
        return MAX_CSR
    if "pdf" in w:
        return MAX_PDF
    if "data" in w or "content" in w:
        return data_limit()
    if "signature" in w or "cms" in w:
        return MAX_SIGNATURE
    if "certificate" in w or "trust" in w or "intermediate" in w or "chain" in w or "anchor" in w:
        return MAX_CERTIFICATE
    if "profile" in w or "config" in w:
        return MAX_TEXT
    if "public key" in w:
        return MAX_PUBLIC_KEY
    return MAX_DEFAULT
