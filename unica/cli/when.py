"""Times given on the command line: ``2026-11-20`` (a date: its start, UTC), ``2026-11-20T08:00``
(no zone: UTC), ``2026-11-20T08:00:00+08:00`` or ``...Z`` (aware)."""

from __future__ import annotations

import datetime as dt

__all__ = ["parse_when", "FORMS"]

#: how the accepted forms are named in help texts and messages
FORMS = "a date (2026-11-20) or an ISO 8601 time (2026-11-20T08:00:00+08:00); no zone means UTC"


def parse_when(text: str, option: str) -> dt.datetime:
    """An aware datetime from ``text``; :class:`~unica.errors.InputError` naming ``option`` if it is
    neither a date nor an ISO 8601 time."""
    from unica.errors import InputError

    t = text.strip()
    try:
        if len(t) == 10:  # YYYY-MM-DD
            d = dt.date.fromisoformat(t)
            return dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc)
        when = dt.datetime.fromisoformat(t[:-1] + "+00:00" if t[-1:] in ("Z", "z") else t)
    except ValueError:
        raise InputError(f"bad {option} {text!r}: expected {FORMS}") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
