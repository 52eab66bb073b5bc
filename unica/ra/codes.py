"""One-time enrollment codes and status tokens.

A code is 120 random bits written in Crockford's base32 (``0-9 A-Z`` without ``I L O U``: no
two characters look alike) as six groups of four, e.g. ``7KQ4-M2XD-...``. People type it in:
case, hyphens and spaces do not matter, and ``O``/``I``/``L`` are read as ``0``/``1``/``1``.
Only a salted hash is stored: HMAC-SHA-256 keyed with a per-application 128-bit salt
(``hmac-sha256$hex``). The code has 120 bits of entropy, so a slow hash would protect nothing
(no guess list exists: 2^120 tries) and would cost every enrollment its time (scrypt at N=2048
was an eighth of an EST enrollment's server time); hashes written by earlier versions
(``scrypt$N$r$p$hex``) are still checked.
A status token (self-service polling) is 256 random bits, URL-safe base64; its SHA-256 is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_BITS = 120
CODE_CHARS = CODE_BITS // 5  # 24
GROUP = 4
#: longer input is not a code (and is not hashed)
MAX_CODE_INPUT = 64

_READ_AS = {"O": "0", "I": "1", "L": "1"}


def new_code() -> str:
    n = int.from_bytes(os.urandom(CODE_BITS // 8), "big")
    chars = "".join(ALPHABET[(n >> (5 * i)) & 31] for i in reversed(range(CODE_CHARS)))
    return "-".join(chars[i:i + GROUP] for i in range(0, CODE_CHARS, GROUP))


def normalize(code: str) -> str | None:
    """The code's 24 characters as typed in (None: not a code's form)."""
    if not isinstance(code, str) or len(code) > MAX_CODE_INPUT:
        return None
    t = "".join(_READ_AS.get(c, c) for c in code.upper() if c not in "- \t")
    if len(t) != CODE_CHARS or any(c not in ALPHABET for c in t):
        return None
    return t


def new_salt() -> str:
    return os.urandom(16).hex()


def hash_code(code: str, salt: str, params: tuple[int, int, int] | None = None) -> str:
    """The stored form of ``code``: HMAC-SHA-256 under the salt, or (``params``) the scrypt form
    of earlier versions."""
    t = normalize(code)
    if t is None:
        raise ValueError("not an enrollment code")
    if params is None:
        return "hmac-sha256$" + hmac.new(bytes.fromhex(salt), t.encode("ascii"), hashlib.sha256).hexdigest()
    n, r, p = params
    dk = hashlib.scrypt(t.encode("ascii"), salt=bytes.fromhex(salt), n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${dk.hex()}"


def code_matches(code: str, salt: str, stored: str | None) -> bool:
    """Does ``code`` hash to ``stored`` (constant-time compare)? Malformed input is no match."""
    if not stored:
        return False
    t = normalize(code)
    kind, _, rest = stored.partition("$")
    params = None
    if kind == "scrypt":
        try:
            n, r, p, _ = rest.split("$")
            params = (int(n), int(r), int(p))
        except ValueError:
            return False
    if t is None or kind not in ("scrypt", "hmac-sha256"):
        hmac.compare_digest(stored, stored)  # the same work either way, near enough
        return False
    return hmac.compare_digest(hash_code(t, salt, params), stored)


def new_token() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode("ascii")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_matches(token: str, stored: str | None) -> bool:
    if not stored or not isinstance(token, str) or len(token) > 200:
        return False
    return hmac.compare_digest(token_hash(token), stored)
