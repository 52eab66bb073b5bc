"""The card-login challenge: the exact text the enterprise's card signs (format ``unica-login-v1``).

The portal makes one per login attempt (:mod:`unica.portal.login`), the local signing agent
(:mod:`unica.agent`) checks it before it lets the card sign, and the portal checks it again with
the signature. It is UTF-8 (in fact ASCII) text, five lines separated by ``"\\n"``, no trailing
newline, fields in this order, exactly one space after each colon::

    unica-login-v1
    origin: https://127.0.0.1:8443
    nonce: <43 characters: base64url, no padding, of 32 random bytes>
    issued: 2026-11-30T06:00:00Z
    expires: 2026-11-30T06:02:00Z

``origin`` is the portal's web origin as a browser spells it in its ``Origin`` header:
``scheme://host[:port]``, lowercase, no path, no default port (``:443`` for https, ``:80`` for
http); ``https`` for any host, ``http`` only for ``127.0.0.1``, ``[::1]`` and ``localhost``. Times
are UTC, whole seconds, ``Z``; ``expires`` is after ``issued`` by at most :data:`MAX_TTL`.

Every text is read strictly: one spelling per value, nothing left over, at most
:data:`MAX_BYTES` bytes. This module imports nothing of the store: the agent uses it on the
enterprise's PC.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
from dataclasses import dataclass

from unica.errors import ChallengeFormatError

#: the first line: the format and its version
HEADER = "unica-login-v1"

#: the longest challenge text accepted (the longest origin is 255 characters)
MAX_BYTES = 512

#: the longest time a challenge may be valid for
MAX_TTL = dt.timedelta(minutes=10)

#: the validity of a challenge unless said otherwise
DEFAULT_TTL = dt.timedelta(seconds=120)

#: bytes of randomness in a nonce (43 base64url characters)
NONCE_BYTES = 32

_FIELDS = ("origin", "nonce", "issued", "expires")
_TIME = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z\Z")
_NONCE = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")
_LABEL = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)"
_DNS = re.compile(rf"\A{_LABEL}(?:\.{_LABEL})*\Z")
_IPV4 = re.compile(r"\A(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\Z")
_ORIGIN = re.compile(r"\A(?P<scheme>[a-z]+)://(?P<host>\[[0-9a-f:.]+\]|[^:/\[\]]+)(?::(?P<port>[1-9][0-9]{0,4}))?\Z")
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
_DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True)
class Challenge:
    """A parsed challenge: ``text`` is exactly what was parsed (the bytes the card signs are
    ``text.encode()``); ``issued``/``expires`` aware UTC."""

    text: str
    origin: str
    nonce: str
    issued: dt.datetime
    expires: dt.datetime

    @property
    def data(self) -> bytes:
        """The signed bytes."""
        return self.text.encode("utf-8")

    def expired(self, now: dt.datetime) -> bool:
        """True once ``now`` is past ``expires`` (or before ``issued``, by more than a minute of
        clock difference between the portal and the PC)."""
        return now > self.expires or now < self.issued - dt.timedelta(minutes=1)


def check_origin(origin: str, what: str = "origin") -> str:
    """``origin`` if it is a web origin in the one spelling this format takes (see the module's
    description), else :class:`~unica.errors.ChallengeFormatError` naming ``what``."""
    if not isinstance(origin, str) or not origin or len(origin) > 255 or not origin.isascii():
        raise ChallengeFormatError(f"{what}: not an origin (scheme://host[:port], ASCII, at most 255 characters)")
    m = _ORIGIN.match(origin)
    if m is None:
        raise ChallengeFormatError(f"{what} {origin!r} is not scheme://host[:port] in lowercase, without a path")
    scheme, host, port = m.group("scheme"), m.group("host"), m.group("port")
    if scheme not in _DEFAULT_PORTS:
        raise ChallengeFormatError(f"{what} {origin!r}: the scheme must be https (http only on 127.0.0.1/localhost)")
    if scheme == "http" and host not in _LOOPBACK:
        raise ChallengeFormatError(f"{what} {origin!r}: plain http is only for 127.0.0.1, [::1] or localhost; "
                                   f"use https")
    if host.startswith("["):
        if host != "[::1]":
            raise ChallengeFormatError(f"{what} {origin!r}: the only IPv6 host taken is [::1]")
    elif not (_IPV4.match(host) or (_DNS.match(host) and not host.replace(".", "").isdigit())):
        raise ChallengeFormatError(f"{what} {origin!r}: the host is not a lowercase DNS name or an IPv4 address")
    if port is not None:
        if int(port) > 65535:
            raise ChallengeFormatError(f"{what} {origin!r}: port out of range")
        if int(port) == _DEFAULT_PORTS[scheme]:
            raise ChallengeFormatError(f"{what} {origin!r}: leave out the default port {port} (a browser's "
                                       f"Origin header does)")
    return origin


def _time_text(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str, name: str) -> dt.datetime:
    if not _TIME.match(value):
        raise ChallengeFormatError(f"challenge: {name} is not YYYY-MM-DDTHH:MM:SSZ")
    try:
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise ChallengeFormatError(f"challenge: {name} is not a valid date and time") from None


def new_nonce() -> str:
    """43 base64url characters of :data:`NONCE_BYTES` bytes from the OS's random source."""
    return base64.urlsafe_b64encode(secrets.token_bytes(NONCE_BYTES)).rstrip(b"=").decode("ascii")


def make_challenge(origin: str, now: dt.datetime, ttl: dt.timedelta | float = DEFAULT_TTL) -> tuple[str, str]:
    """A new challenge for ``origin``, issued at ``now`` (aware; whole seconds kept), valid for
    ``ttl`` (a timedelta or seconds, 1 s to :data:`MAX_TTL`): ``(text, nonce)``."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    if not isinstance(ttl, dt.timedelta):
        ttl = dt.timedelta(seconds=ttl)
    if not dt.timedelta(seconds=1) <= ttl <= MAX_TTL:
        raise ValueError(f"a challenge's lifetime must be 1 s to {int(MAX_TTL.total_seconds())} s")
    check_origin(origin)
    issued = now.astimezone(dt.timezone.utc).replace(microsecond=0)
    nonce = new_nonce()
    text = "\n".join((HEADER, f"origin: {origin}", f"nonce: {nonce}", f"issued: {_time_text(issued)}",
                      f"expires: {_time_text(issued + ttl)}"))
    return text, nonce


def parse_challenge(text: str | bytes) -> Challenge:
    """The :class:`Challenge` in ``text`` (str, or UTF-8 bytes), read strictly; anything else is
    :class:`~unica.errors.ChallengeFormatError`."""
    if isinstance(text, (bytes, bytearray)):
        if len(text) > MAX_BYTES:
            raise ChallengeFormatError(f"challenge: more than {MAX_BYTES} bytes")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise ChallengeFormatError("challenge: not UTF-8") from None
    if not isinstance(text, str):
        raise ChallengeFormatError("challenge: not text")
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise ChallengeFormatError(f"challenge: more than {MAX_BYTES} bytes")
    if not text.isascii():
        raise ChallengeFormatError("challenge: characters outside ASCII")
    lines = text.split("\n")
    if lines[0] != HEADER:
        raise ChallengeFormatError(f"not a unica login challenge (the first line must be {HEADER!r})")
    if len(lines) != 1 + len(_FIELDS):
        raise ChallengeFormatError(f"challenge: {len(lines)} lines, expected {1 + len(_FIELDS)} "
                                   f"(no trailing newline)")
    values = {}
    for name, line in zip(_FIELDS, lines[1:]):
        prefix = f"{name}: "
        if not line.startswith(prefix):
            raise ChallengeFormatError(f"challenge: expected the field {name!r} here ({prefix!r}), in that order")
        value = line[len(prefix):]
        if value != value.strip() or not value or any(c < " " or c == "\x7f" for c in value):
            raise ChallengeFormatError(f"challenge: {name} has spaces or control characters around or in it")
        values[name] = value
    origin = check_origin(values["origin"], "challenge origin")
    nonce = values["nonce"]
    if not _NONCE.match(nonce):
        raise ChallengeFormatError("challenge: the nonce is not 43 base64url characters")
    raw = base64.urlsafe_b64decode(nonce + "=")
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != nonce:
        raise ChallengeFormatError("challenge: the nonce is not in canonical base64url")
    issued = _parse_time(values["issued"], "issued")
    expires = _parse_time(values["expires"], "expires")
    if not issued < expires <= issued + MAX_TTL:
        raise ChallengeFormatError(f"challenge: expires must be after issued, by at most "
                                   f"{int(MAX_TTL.total_seconds())} s")
    return Challenge(text, origin, nonce, issued, expires)


def nonce_sha256(nonce: str) -> str:
    """What the portal stores of a nonce: the SHA-256 (hex) of its ASCII text."""
    import hashlib

    return hashlib.sha256(nonce.encode("ascii")).hexdigest()
