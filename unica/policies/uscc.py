"""The Unified Social Credit Code (统一社会信用代码), GB 32100-2015.

18 characters from ``0-9`` and ``A-H J-N P-R T U W-Y`` (no I, O, S, V, Z):

* 1   registration authority code (``1-9``, ``A-G``, ``Y``)
* 2   organisation type code
* 3-8 administrative division code (GB/T 2260, digits)
* 9-17 organisation code (GB 11714)
* 18  check character: ``31 - (sum(value(c_i) * w_i) mod 31)``, 31 written as ``0``,
  weights ``3^(i-1) mod 31``.

unica carries the code in the subject's ``organizationIdentifier`` (2.5.4.97), either bare
(``91350100M000100Y43``) or with the ETSI EN 319 412-1 semantics prefix ``NTRCN-``.
"""

from __future__ import annotations

CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {c: i for i, c in enumerate(CHARSET)}
WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
ETSI_PREFIX = "NTRCN-"


class USCCError(ValueError):
    """The text is not a valid Unified Social Credit Code (the message says why)."""


def check_char(first17: str) -> str:
    total = sum(_VALUE[c] * w for c, w in zip(first17, WEIGHTS))
    return CHARSET[(31 - total % 31) % 31]


def strip_prefix(value: str) -> str:
    return value[len(ETSI_PREFIX):] if value.upper().startswith(ETSI_PREFIX) else value


def validate_uscc(value: str) -> str:
    """Return the bare 18-character code, or raise :class:`USCCError` saying what is wrong."""
    code = strip_prefix(value)
    if len(code) != 18:
        raise USCCError(f"Unified Social Credit Code {value!r} must have 18 characters, not {len(code)}")
    bad = [c for c in code if c not in _VALUE]
    if bad:
        raise USCCError(f"Unified Social Credit Code {value!r} contains {bad[0]!r} "
                        "(allowed: digits and upper-case letters except I, O, S, V, Z)")
    if not code[2:8].isdigit():
        raise USCCError(f"Unified Social Credit Code {value!r}: characters 3-8 (administrative division code) "
                        "must be digits")
    want = check_char(code[:17])
    if code[17] != want:
        raise USCCError(f"Unified Social Credit Code {value!r} has a wrong check character "
                        f"{code[17]!r} (GB 32100-2015 gives {want!r})")
    return code
