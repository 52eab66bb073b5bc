"""TSA units: a key (on a PKCS#11 token or in an encrypted file) and a certificate issued by one
of unica's CAs under the built-in ``timestamping`` profile (EKU timeStamping only, critical),
with the unit's default policy (mandatory), the other policies it accepts and its accuracy.

Every change is audited (``tsa.unit-added``, ``tsa.unit-disabled``). A refusal changes nothing:
the name, the policy OIDs and the accuracy are checked before a key is made, and the unit row is
written in one transaction with its audit entry after the certificate is issued.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from unica.errors import ConfigurationError, InputError, PolicyViolation, UnicaError
from unica.store import models as m

__all__ = ["UnitInfo", "TSAUnitNotFound", "TSAUnitExists", "TSAUnitDisabled", "add_unit", "list_units", "get_unit",
           "disable_unit", "parse_accuracy", "check_policy_oid", "PROFILE"]

PROFILE = "timestamping"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]{0,17})){1,30}$")


class TSAUnitNotFound(UnicaError):
    """No TSA unit has that name."""


class TSAUnitExists(UnicaError):
    """A TSA unit with that name already exists."""


class TSAUnitDisabled(PolicyViolation):
    """The TSA unit is disabled: it issues no token."""


@dataclass(frozen=True)
class UnitInfo:
    name: str
    ca: str
    key_uri: str
    cert_der: bytes = field(repr=False)
    cert_serial: str
    policy: str
    accept_policies: tuple[str, ...]
    accuracy_ms: int
    status: str
    created_at: dt.datetime
    disabled_at: dt.datetime | None

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.cert_der)

    @property
    def policies(self) -> tuple[str, ...]:
        """Every policy a request may name: the default first."""
        return (self.policy, *[p for p in self.accept_policies if p != self.policy])

    def to_dict(self) -> dict:
        c = self.cert
        return {"name": self.name, "ca": self.ca, "key_uri": self.key_uri, "certificate_serial": self.cert_serial,
                "subject": c.subject.rfc4514_string(), "policy": self.policy,
                "accept_policies": list(self.accept_policies), "accuracy": format_accuracy(self.accuracy_ms),
                "status": self.status, "not_after": c.not_valid_after_utc.isoformat(),
                "created_at": self.created_at.isoformat(),
                "disabled_at": self.disabled_at.isoformat() if self.disabled_at else None}

    @classmethod
    def from_row(cls, r: m.TSAUnit) -> "UnitInfo":
        return cls(r.name, r.ca_name, r.key_uri, r.cert_der, r.cert_serial, r.policy, tuple(r.accept_policies or ()),
                   r.accuracy_ms, r.status, r.created_at, r.disabled_at)


def parse_accuracy(text: str) -> int:
    """``1s``, ``500ms``, ``0.5s`` -> milliseconds (1 ms .. 1 s: EN 319 421 wants 1 s or better)."""
    t = (text or "").strip().lower()
    mt = re.fullmatch(r"(\d{1,4}(?:\.\d{1,3})?)\s*(s|ms)", t)
    if not mt:
        raise InputError(f"--accuracy {text!r}: expected e.g. '1s' or '500ms'")
    ms = round(float(mt.group(1)) * (1000 if mt.group(2) == "s" else 1))
    if not 1 <= ms <= 1000:
        raise InputError(f"--accuracy {text!r}: must be between 1ms and 1s (time-stamps are declared to 1 s or better)")
    return ms


def format_accuracy(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def check_policy_oid(text: str, what: str = "--policy") -> str:
    if not isinstance(text, str) or not _OID.match(text.strip()):
        raise InputError(f"{what} {text!r} is not a dotted object identifier (e.g. 1.2.156.112559.1.1.1)")
    t = text.strip()
    arcs = t.split(".")
    if arcs[0] in ("0", "1") and int(arcs[1]) > 39:
        raise InputError(f"{what} {text!r} is not a valid object identifier (second arc above 39)")
    return t


def _row(s, name: str) -> m.TSAUnit:
    row = s.execute(select(m.TSAUnit).where(m.TSAUnit.name == name)).scalar_one_or_none()
    if row is None:
        raise TSAUnitNotFound(f"no TSA unit named {name!r} (see 'unica tsa unit list')")
    return row


def get_unit(store, name: str) -> UnitInfo:
    with store.read() as s:
        return UnitInfo.from_row(_row(s, name))


def list_units(store) -> list[UnitInfo]:
    with store.read() as s:
        return [UnitInfo.from_row(r) for r in s.scalars(select(m.TSAUnit).order_by(m.TSAUnit.name))]


def _new_key_uri(name: str, token: str | None, now: dt.datetime) -> str:
    stamp = now.strftime("%Y%m%d%H%M%S")
    if token:
        from unica.hsm.uri import Pkcs11URI

        return str(Pkcs11URI(token=token, object=f"tsa-{name}-{stamp}"))
    from unica.config import keys_dir

    return f"file:{keys_dir() / f'tsa-{name}-{stamp}.pem'}"


def add_unit(store, name: str, ca_name: str, *, policy: str, accept_policies=(), accuracy_ms: int = 1000,
             key_type: str = "ec-p256", token: str | None = None, key_uri: str | None = None,
             subject: x509.Name | None = None, pin=None, passphrase=None, ca_key=None, auth=None,
             now: dt.datetime | None = None) -> UnitInfo:
    """Make the unit's key (or use ``key_uri``), have CA ``ca_name`` issue its certificate under
    the ``timestamping`` profile, and record the unit. ``pin``, ``passphrase`` and ``ca_key`` may
    be functions returning them (called only once the request passed its checks).

    ``auth``: the operator acting (see :mod:`unica.auth`): once operators exist, operation
    ``tsa.unit``, an admin's (checked before a key is made; the issuance runs under it)."""
    from unica.auth import Operation, authorized

    op = Operation("tsa.unit", ca=ca_name, params={"action": "add", "name": name, "policy": policy,
                                                   "key_type": key_type, "token": token, "key_uri": key_uri})
    with authorized(store, op, auth):
        return _add_unit(store, name, ca_name, policy=policy, accept_policies=accept_policies,
                         accuracy_ms=accuracy_ms, key_type=key_type, token=token, key_uri=key_uri, subject=subject,
                         pin=pin, passphrase=passphrase, ca_key=ca_key, now=now)


def _add_unit(store, name, ca_name, *, policy, accept_policies, accuracy_ms, key_type, token, key_uri, subject,
              pin, passphrase, ca_key, now) -> UnitInfo:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from unica.ca.issuance import IssuingCA
    from unica.hsm import certified_or_discarded, generate_key, load_key
    from unica.hsm.enroll import make_csr
    from unica.store.cas import get_ca_row

    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"TSA unit name {name!r}: letters, digits, '.', '_' or '-', at most 64")
    policy = check_policy_oid(policy)
    accepted = []
    for p in accept_policies or ():
        p = check_policy_oid(p, "--accept-policy")
        if p != policy and p not in accepted:
            accepted.append(p)
    if not isinstance(accuracy_ms, int) or not 1 <= accuracy_ms <= 1000:
        raise InputError("the accuracy must be between 1 ms and 1 s")
    if key_type == "ed25519":
        raise InputError("a TSA unit key must be EC or RSA (the timestamping profile allows ec-p256, ec-p384, "
                         "rsa-2048, rsa-3072, rsa-4096)")
    now = now or m.utcnow()
    with store.read() as s:
        if s.execute(select(m.TSAUnit.id).where(m.TSAUnit.name == name)).first() is not None:
            raise TSAUnitExists(f"a TSA unit named {name!r} already exists")
        ca = get_ca_row(s, ca_name)
        if ca.cert_der is None:
            raise ConfigurationError(f"CA {ca_name!r} has no certificate yet; it cannot certify a TSA unit")
        ca_subject = x509.load_der_x509_certificate(ca.cert_der).subject
    issuing = IssuingCA(store, ca_name, key=ca_key() if callable(ca_key) else ca_key)
    issuing.profile(PROFILE)  # a CA whose profile set leaves out timestamping refuses before a key is made
    _ = issuing.issuer  # an expired / revoked CA refuses here too
    if subject is None:
        subject = x509.Name([*ca_subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[:1],
                             *ca_subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[:1],
                             x509.NameAttribute(NameOID.COMMON_NAME, f"TSA {name}")])
    pin, passphrase = (v() if callable(v) else v for v in (pin, passphrase))
    secrets = {"pin": pin} if (key_uri or "").startswith("pkcs11:") or (token and not key_uri) else \
        {"passphrase": passphrase}
    generated = key_uri is None
    if generated:
        key_uri = _new_key_uri(name, token, now)
        key = generate_key(key_uri, key_type, **secrets)
        key_uri = str(getattr(key, "uri", key_uri))
    else:
        key = load_key(key_uri, **secrets)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raise InputError("a TSA unit key must be EC or RSA")

    def certify_and_record() -> UnitInfo:
        csr = make_csr(key, subject)
        issued = issuing.issue(csr.public_bytes(Encoding.DER), PROFILE, requester=f"tsa-unit:{name}",
                               source=f"TSA unit {name} request")
        with store.write() as s:
            if s.execute(select(m.TSAUnit.id).where(m.TSAUnit.name == name)).first() is not None:
                raise TSAUnitExists(f"a TSA unit named {name!r} already exists")
            row = m.TSAUnit(name=name, ca_name=ca_name, key_uri=key_uri, cert_der=issued.der,
                            cert_serial=issued.serial_hex, policy=policy, accept_policies=accepted,
                            accuracy_ms=accuracy_ms, status="active", created_at=now)
            s.add(row)
            s.flush()
            store.audit(s, "tsa.unit-added", ca=ca_name, target=name, details={
                "key": key_uri, "certificate": issued.serial_hex, "policy": policy, "accept_policies": accepted,
                "accuracy_ms": accuracy_ms})
            return UnitInfo.from_row(row)

    return certified_or_discarded(certify_and_record, key, key_uri if generated else None, pin=pin)


def disable_unit(store, name: str, *, reason: str | None = None, auth=None) -> UnitInfo:
    """Mark the unit disabled: servers refuse to start on it and running ones stop issuing
    (within a second). Disabling a disabled unit is refused (nothing changes). Once operators
    exist, operation ``tsa.unit`` (an admin's)."""
    from unica.auth import Operation, authorized

    with authorized(store, Operation("tsa.unit", params={"action": "disable", "name": name, "note": reason}), auth):
        return _disable_unit(store, name, reason)


def _disable_unit(store, name: str, reason: str | None) -> UnitInfo:
    with store.write() as s:
        row = _row(s, name)
        if row.status == "disabled":
            raise PolicyViolation(f"TSA unit {name!r} is already disabled (since "
                                  f"{row.disabled_at:%Y-%m-%dT%H:%M:%SZ})")
        row.status = "disabled"
        row.disabled_at = m.utcnow()
        store.audit(s, "tsa.unit-disabled", ca=row.ca_name, target=name, details={"reason": reason})
        return UnitInfo.from_row(row)
