"""Durations as operators write them: ``20y``, ``397d``, ``12h``, ``30m`` (or ``1y6m``? no:
one number and one unit, to keep them unambiguous). A year is 365 days."""

from __future__ import annotations

import datetime as dt
import re

_UNITS = {"y": 365 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_RE = re.compile(r"^\s*(\d{1,6})\s*([ydhms])\s*$")
#: the longest duration accepted: any validity or look-ahead from now stays a valid date
MAX_YEARS = 100


def parse_duration(text: str) -> dt.timedelta:
    """``"20y"`` -> 7300 days. Raises ``ValueError`` with a readable message."""
    if not isinstance(text, str):
        raise ValueError(f"a duration must be a string like '2y' or '397d', not {type(text).__name__}")
    m = _RE.match(text.lower())
    if not m:
        raise ValueError(f"bad duration {text!r} (expected a number and a unit y/d/h/m/s, e.g. '2y', '397d')")
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    if seconds > MAX_YEARS * _UNITS["y"]:
        raise ValueError(f"duration {text!r} is longer than {MAX_YEARS} years")
    return dt.timedelta(seconds=seconds)


def format_duration(td: dt.timedelta) -> str:
    s = int(td.total_seconds())
    for unit in "ydhms":
        if s % _UNITS[unit] == 0:
            return f"{s // _UNITS[unit]}{unit}"
    return f"{s}s"  # pragma: no cover
