"""The agency systems registered as OpenID Connect clients (``unica sso client ...``).

A client has a name (the operator's handle), a ``client_id`` (random, what the agency system
configures), the exact redirect URIs it may be sent back to, and -- unless it is public (PKCE
only) -- a client secret. The secret is made here from 256 random bits, shown once, and only its
salted HMAC-SHA-256 is kept (``hmac-sha256$SALT$HEX``): with that much entropy a slow hash would
protect nothing more (as unica.ra.codes argues for enrollment codes).

Redirect URIs are compared character for character later (no prefix, no pattern): each must be an
absolute ``https`` URI (``http`` only to 127.0.0.1, ::1 or localhost, for development), with a
host, without a fragment, user information, spaces or control characters.

Every change is audited (``sso.client-added``, ``sso.client-disabled``) in the transaction that
makes it, under the operator's authority once operators exist (operation ``sso.client``, an
admin's); a refusal changes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select

from unica.errors import InputError, PolicyViolation
from unica.sso.errors import SSOClientDisabled, SSOClientExists, SSOClientNotFound
from unica.store import models as m

__all__ = ["ClientInfo", "NewClient", "add_client", "list_clients", "get_client", "disable_client",
           "check_redirect_uri", "secret_matches", "active_client"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
#: the longest redirect URI taken (browsers and servers take 2,000 characters everywhere)
MAX_REDIRECT_URI = 2000
#: the most redirect URIs one client may have
MAX_REDIRECT_URIS = 20
_SECRET_SCHEME = "hmac-sha256"


@dataclass(frozen=True)
class ClientInfo:
    name: str
    client_id: str
    public: bool
    redirect_uris: tuple[str, ...]
    status: str
    created_at: dt.datetime
    disabled_at: dt.datetime | None

    @classmethod
    def from_row(cls, r: m.SSOClient) -> "ClientInfo":
        return cls(r.name, r.client_id, r.secret_hash is None, tuple(r.redirect_uris or ()), r.status, r.created_at,
                   r.disabled_at)

    def to_dict(self) -> dict:
        return {"name": self.name, "client_id": self.client_id, "type": "public" if self.public else "confidential",
                "redirect_uris": list(self.redirect_uris), "status": self.status,
                "created_at": self.created_at.isoformat(),
                "disabled_at": self.disabled_at.isoformat() if self.disabled_at else None}


@dataclass(frozen=True)
class NewClient:
    """What :func:`add_client` made: the client, and its secret (None for a public client) --
    the only time the secret exists outside the agency system."""

    client: ClientInfo
    secret: str | None

    def __repr__(self) -> str:  # never the secret in a log or a traceback
        return f"NewClient(client={self.client!r}, secret={'<hidden>' if self.secret else None})"


def check_redirect_uri(uri: str) -> str:
    """``uri`` if it may be a redirect URI (see the module's rules), else :class:`InputError`."""
    if not isinstance(uri, str) or not uri:
        raise InputError("--redirect-uri: empty")
    shown = uri if len(uri) <= 80 else uri[:77] + "..."
    if len(uri) > MAX_REDIRECT_URI:
        raise InputError(f"--redirect-uri {shown!r}: longer than {MAX_REDIRECT_URI} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or 0x7f <= ord(ch) <= 0x9f for ch in uri):
        raise InputError(f"--redirect-uri {shown!r}: spaces or control characters")
    if "#" in uri:
        raise InputError(f"--redirect-uri {shown!r}: a redirect URI has no fragment (RFC 6749 3.1.2)")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as e:
        raise InputError(f"--redirect-uri {shown!r}: not a URI ({e})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.netloc:
        raise InputError(f"--redirect-uri {shown!r}: must be an absolute https:// URI")
    if "@" in parts.netloc:
        raise InputError(f"--redirect-uri {shown!r}: user information (user@) is not allowed")
    host = (parts.hostname or "").lower()
    if not host:
        raise InputError(f"--redirect-uri {shown!r}: no host")
    if scheme == "http" and host not in _LOOPBACK:
        raise InputError(f"--redirect-uri {shown!r}: http is only for 127.0.0.1, ::1 or localhost; use https")
    if port == 0:
        raise InputError(f"--redirect-uri {shown!r}: port 0")
    return uri


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"agency system name {name!r}: letters, digits, '.', '_' or '-', at most 64, "
                         "starting with a letter or digit")
    return name


def _hash_secret(secret: str, salt: bytes) -> str:
    return hmac.new(salt, secret.encode("utf-8"), hashlib.sha256).hexdigest()


def secret_matches(stored: str | None, secret: str) -> bool:
    """Does ``secret`` match the stored form (constant time; False for a public client)?"""
    if not stored or not isinstance(secret, str) or len(secret) > 256:
        return False
    try:
        scheme, salt_hex, digest = stored.split("$")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    if scheme != _SECRET_SCHEME:
        return False
    return hmac.compare_digest(_hash_secret(secret, salt), digest)


def _row(s, name: str) -> m.SSOClient:
    row = s.execute(select(m.SSOClient).where(m.SSOClient.name == name)).scalar_one_or_none()
    if row is None:
        raise SSOClientNotFound(f"no agency system named {name!r} (see 'unica sso client list')")
    return row


def add_client(store, name: str, redirect_uris, *, public: bool = False, auth=None) -> NewClient:
    """Register agency system ``name`` with its exact ``redirect_uris``; a confidential client
    (the default) gets a new secret, returned here once. Once operators exist, operation
    ``sso.client`` (an admin's)."""
    from unica.auth import Operation, authorized

    _check_name(name)
    uris = list(redirect_uris or ())
    if not uris:
        raise InputError("give at least one --redirect-uri")
    if len(uris) > MAX_REDIRECT_URIS:
        raise InputError(f"at most {MAX_REDIRECT_URIS} redirect URIs per agency system")
    for u in uris:
        check_redirect_uri(u)
    if len(set(uris)) != len(uris):
        raise InputError("a --redirect-uri is given twice")
    with store.read() as s:
        if s.execute(select(m.SSOClient.id).where(m.SSOClient.name == name)).first() is not None:
            raise SSOClientExists(f"an agency system named {name!r} is already registered")
    op = Operation("sso.client", params={"action": "add", "name": name, "redirect_uris": uris, "public": public})
    with authorized(store, op, auth):
        secret = None if public else secrets.token_urlsafe(32)
        stored = None
        if secret is not None:
            salt = secrets.token_bytes(16)
            stored = f"{_SECRET_SCHEME}${salt.hex()}${_hash_secret(secret, salt)}"
        with store.write() as s:
            if s.execute(select(m.SSOClient.id).where(m.SSOClient.name == name)).first() is not None:
                raise SSOClientExists(f"an agency system named {name!r} is already registered")
            row = m.SSOClient(name=name, client_id=secrets.token_urlsafe(18), secret_hash=stored,
                              redirect_uris=uris, status="active", created_at=m.utcnow())
            s.add(row)
            s.flush()
            store.audit(s, "sso.client-added", target=name, details={
                "client_id": row.client_id, "redirect_uris": uris, "type": "public" if public else "confidential"})
            return NewClient(ClientInfo.from_row(row), secret)


def list_clients(store) -> list[ClientInfo]:
    with store.read() as s:
        return [ClientInfo.from_row(r) for r in s.scalars(select(m.SSOClient).order_by(m.SSOClient.name))]


def get_client(store, name: str) -> ClientInfo:
    with store.read() as s:
        return ClientInfo.from_row(_row(s, name))


def active_client(store, client_id: str) -> ClientInfo:
    """The client whose ``client_id`` this is, if it is active (else SSOClientNotFound /
    SSOClientDisabled): what every token made for a client checks first."""
    if not isinstance(client_id, str) or not 0 < len(client_id) <= 64:
        raise SSOClientNotFound("no agency system has that client_id")
    with store.read() as s:
        row = s.execute(select(m.SSOClient).where(m.SSOClient.client_id == client_id)).scalar_one_or_none()
        if row is None:
            raise SSOClientNotFound(f"no agency system has client_id {client_id!r}")
        if row.status != "active":
            raise SSOClientDisabled(f"agency system {row.name!r} is disabled")
        return ClientInfo.from_row(row)


def disable_client(store, name: str, *, reason: str | None = None, auth=None) -> ClientInfo:
    """Disable agency system ``name``: no ID token is made for it from now on. Disabling a
    disabled client is refused (nothing changes). Once operators exist, operation ``sso.client``."""
    from unica.auth import Operation, authorized

    _check_name(name)
    get_client(store, name)  # an unknown name is said before a card is asked to sign
    with authorized(store, Operation("sso.client", params={"action": "disable", "name": name, "note": reason}),
                    auth):
        with store.write() as s:
            row = _row(s, name)
            if row.status == "disabled":
                raise PolicyViolation(f"agency system {name!r} is already disabled (since "
                                      f"{row.disabled_at:%Y-%m-%dT%H:%M:%SZ})")
            row.status = "disabled"
            row.disabled_at = m.utcnow()
            store.audit(s, "sso.client-disabled", target=name, details={"client_id": row.client_id,
                                                                          "reason": reason})
            return ClientInfo.from_row(row)
