"""Certificate profiles: data files loaded into frozen :class:`Profile` values.

Built-in profiles ship in ``unica/policies/builtin/*.toml``; operators add their own as
``$UNICA_HOME/profiles/NAME.toml`` (an operator profile may not reuse a built-in name).

>>> get_profile("enterprise-sign").key_usage
('digitalSignature', 'nonRepudiation')
"""

from __future__ import annotations

import functools
from pathlib import Path

from unica.errors import ProfileError, ProfileNotFound
from unica.policies.duration import format_duration, parse_duration
from unica.policies.loader import load_profile_file, parse_profile
from unica.policies.model import PolicyInformation, Profile, SANRules, SubjectRules
from unica.policies.uscc import USCCError, validate_uscc

__all__ = ["Profile", "PolicyInformation", "SANRules", "SubjectRules", "get_profile", "list_profiles",
           "load_profile_file", "parse_profile", "parse_duration", "format_duration", "validate_uscc",
           "USCCError", "BUILTIN_DIR", "operator_dir"]

BUILTIN_DIR = Path(__file__).parent / "builtin"


def operator_dir() -> Path:
    from unica.config import profiles_dir

    return profiles_dir()


@functools.lru_cache(maxsize=None)
def _builtin(name: str) -> Profile:
    return load_profile_file(BUILTIN_DIR / f"{name}.toml")


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def get_profile(name: str, directory: Path | None = None) -> Profile:
    """The profile called ``name``: a built-in, or ``NAME.toml`` in the operator directory."""
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ProfileNotFound(f"bad profile name {name!r}")
    d = directory if directory is not None else operator_dir()
    op = d / f"{name}.toml"
    if name in builtin_names():
        if op.exists():
            raise ProfileError(f"profile {op}: shadows the built-in profile {name!r}; give it another name")
        return _builtin(name)
    if op.is_file():
        return load_profile_file(op)
    raise ProfileNotFound(f"unknown profile {name!r} (built-in: {', '.join(builtin_names())}; "
                          f"operator profiles in {d})")


def list_profiles(directory: Path | None = None) -> list[Profile]:
    """Every built-in and operator profile (an invalid operator file raises ProfileError)."""
    d = directory if directory is not None else operator_dir()
    out = [_builtin(n) for n in builtin_names()]
    if d.is_dir():
        for p in sorted(d.glob("*.toml")):
            out.append(get_profile(p.stem, d))
    return out
