"""The provider's ID-token signing keys (``unica sso key ...``).

A key is a key :mod:`unica.hsm` can load: on a token (``pkcs11:...``, the private key never
leaves it) or an encrypted PKCS#8 file (``file:...``), made beforehand with ``unica key
generate``. Adding one stores its URI, its JWS algorithm (ES256 for P-256, ES384 for P-384,
RS256 or PS256 for RSA), its public JWK and its ``kid``: the RFC 7638 thumbprint, so the same key
always has the same kid and cannot be added twice.

Rotation: the newest active key signs; ``retire`` stops a key from signing while the JWKS keeps
publishing it, so tokens it signed still verify until they expire. Audited: ``sso.key-added``,
``sso.key-retired`` (operation ``sso.key``, an admin's, once operators exist).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import select

from unica.errors import InputError, PolicyViolation
from unica.sso.errors import NoSigningKey, SSOKeyExists, SSOKeyNotFound
from unica.store import models as m

__all__ = ["KeyRow", "add_key", "list_keys", "retire_key", "signing_key", "published_keys"]

_KID = re.compile(r"^[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class KeyRow:
    kid: str
    key_uri: str
    alg: str
    public_jwk: dict
    status: str
    created_at: dt.datetime
    retired_at: dt.datetime | None

    @classmethod
    def from_row(cls, r: m.SSOKey) -> "KeyRow":
        return cls(r.kid, r.key_uri, r.alg, dict(r.public_jwk), r.status, r.created_at, r.retired_at)

    def to_dict(self) -> dict:
        return {"kid": self.kid, "alg": self.alg, "key_uri": self.key_uri, "status": self.status,
                "created_at": self.created_at.isoformat(),
                "retired_at": self.retired_at.isoformat() if self.retired_at else None,
                "public_jwk": self.public_jwk}


def _canonical_uri(uri: str) -> str:
    from unica.hsm.uri import FileURI, parse_key_uri

    u = parse_key_uri(uri)
    if isinstance(u, FileURI):  # the service may run from another directory
        return f"file:{u.path.expanduser().resolve()}"
    return str(u)


def add_key(store, key_uri: str, *, alg: str | None = None, pin=None, passphrase=None, auth=None) -> KeyRow:
    """Make the key at ``key_uri`` an ID-token signing key (it signs from now on: the newest
    active key does). ``pin`` / ``passphrase`` may be functions returning them (called once the
    request passed its checks). Once operators exist, operation ``sso.key``."""
    from unica.auth import Operation, authorized
    from unica.hsm import load_key
    from unica.hsm.keytypes import is_sm2
    from unica.sso.signing import algorithm_for, public_jwk

    uri = _canonical_uri(key_uri)
    if alg is not None and alg not in ("ES256", "ES384", "RS256", "PS256"):
        raise InputError(f"--alg {alg!r}: one of ES256, ES384, RS256, PS256")
    op = Operation("sso.key", params={"action": "add", "key_uri": uri, "alg": alg})
    with authorized(store, op, auth):
        secrets = {"pin": pin() if callable(pin) else pin} if uri.startswith("pkcs11:") else \
            {"passphrase": passphrase() if callable(passphrase) else passphrase}
        key = load_key(uri, **secrets)
        if is_sm2(key):
            raise InputError("an ID-token key must be EC (P-256, P-384) or RSA, not SM2 (agency systems' OIDC "
                             "libraries do not take SM2 JWS)")
        chosen = algorithm_for(key.public_key(), alg)
        jwk = public_jwk(key.public_key(), chosen)
        with store.write() as s:
            if s.execute(select(m.SSOKey.id).where(m.SSOKey.kid == jwk["kid"])).first() is not None:
                raise SSOKeyExists(f"this key (kid {jwk['kid']}) is already an ID-token signing key")
            row = m.SSOKey(kid=jwk["kid"], key_uri=uri, alg=chosen, public_jwk=jwk, status="active",
                           created_at=m.utcnow())
            s.add(row)
            s.flush()
            store.audit(s, "sso.key-added", target=jwk["kid"], details={"key": uri, "alg": chosen})
            return KeyRow.from_row(row)


def list_keys(store) -> list[KeyRow]:
    """Every key, newest first."""
    with store.read() as s:
        return [KeyRow.from_row(r) for r in
                s.scalars(select(m.SSOKey).order_by(m.SSOKey.created_at.desc(), m.SSOKey.id.desc()))]


def published_keys(store) -> list[KeyRow]:
    """The keys the JWKS publishes: active and retired (newest first)."""
    return [k for k in list_keys(store) if k.status in ("active", "retired")]


def signing_key(store) -> KeyRow:
    """The key that signs now: the newest active one (else NoSigningKey)."""
    for k in list_keys(store):
        if k.status == "active":
            return k
    raise NoSigningKey("no active ID-token signing key: add one with 'unica sso key add --key URI'")


def retire_key(store, kid: str, *, auth=None) -> KeyRow:
    """Stop ``kid`` from signing; the JWKS keeps it. Retiring a retired key is refused."""
    from unica.auth import Operation, authorized

    if not isinstance(kid, str) or not _KID.match(kid):
        raise InputError(f"{kid!r} is not a key id (43 base64url characters: see 'unica sso key list')")
    with store.read() as s:
        if s.execute(select(m.SSOKey.id).where(m.SSOKey.kid == kid)).first() is None:
            raise SSOKeyNotFound(f"no ID-token signing key with kid {kid} (see 'unica sso key list')")
    with authorized(store, Operation("sso.key", params={"action": "retire", "kid": kid}), auth):
        with store.write() as s:
            row = s.execute(select(m.SSOKey).where(m.SSOKey.kid == kid)).scalar_one()
            if row.status != "active":
                raise PolicyViolation(f"key {kid} is already retired (since {row.retired_at:%Y-%m-%dT%H:%M:%SZ})")
            row.status = "retired"
            row.retired_at = m.utcnow()
            store.audit(s, "sso.key-retired", target=kid, details={"key": row.key_uri, "alg": row.alg})
            return KeyRow.from_row(row)
