"""What an operator asks for, in a form that can be signed, stored and compared.

An :class:`Operation` is a name (``cert.issue``, ``ca.set``, ...), the CA it concerns and its
parameters: exactly what is asked, as JSON. Its digest (SHA-256 over a canonical JSON form) is
what the operator's card signs, what approvers sign, and what is compared again before a
request under dual control runs: what runs is exactly what was approved.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

#: the roles an operator may hold
ROLES = ("admin", "ra-officer", "auditor", "custodian")

#: profiles whose certificates are the CA's own business (its operators, its OCSP signer, CAs):
#: issued and revoked by admins, not by RA offices
CA_LEVEL_PROFILES = frozenset({"operator", "ocsp-signer", "root-ca", "sub-ca", "timestamping"})

#: who may ask for each operation (an approval rule may add a quorum on top)
PERMITTED: dict[str, frozenset[str]] = {
    **{op: frozenset({"admin"}) for op in (
        "home.init", "ca.create", "ca.revoke", "ca.set", "ca.import-cert", "profile.change",
        "operator.add", "operator.set", "operator.disable", "office.set", "approval-rule.set", "key.backup", "key.restore",
        "ocsp.configure", "ocsp.signer", "tsa.unit", "sso.client", "sso.key", "backup.create", "recover")},
    **{op: frozenset({"ra-officer"}) for op in ("cert.issue", "cert.revoke", "cert.hold", "cert.release")},
    "crl.generate": frozenset({"admin", "ra-officer"}),
    "ocsp.presign": frozenset({"admin", "ra-officer"}),
    "audit.seal": frozenset({"auditor", "admin"}),
    "audit.read": frozenset({"auditor", "admin"}),
    # the service's registry (enterprises, applications, revocation requests)
    "enterprise.add": frozenset({"admin", "ra-officer"}),
    "enterprise.set": frozenset({"admin", "ra-officer"}),
    **{op: frozenset({"ra-officer"}) for op in ("application.create", "application.decide", "revocation-request.decide")},
}

#: operations an approval rule may name (``cert.issue:PROFILE`` too)
RULE_OPERATIONS = ("ca.create", "ca.revoke", "ca.set", "profile.change", "operator.add", "operator.disable",
                   "key.backup", "key.restore", "cert.issue", "approval-rule.set", "office.set")


def canonical_json(value: Any) -> bytes:
    """One byte string per value: sorted keys, no spaces, UTF-8 (what is signed and hashed)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


@dataclass(frozen=True)
class Operation:
    """An operation: ``name``, the ``ca`` it concerns (if any) and its JSON ``params``."""

    name: str
    ca: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def canonical(self) -> bytes:
        return canonical_json({"operation": self.name, "ca": self.ca, "params": dict(self.params)})

    def digest(self) -> str:
        """SHA-256 (hex) of :meth:`canonical`."""
        return hashlib.sha256(self.canonical()).hexdigest()

    def rule_names(self) -> tuple[str, ...]:
        """The approval-rule names that apply, most specific first (``cert.issue:agency-sign``)."""
        if self.name == "operator.set":  # changing roles is granting them: the operator.add rule
            return ("operator.set", "operator.add")
        profile = self.params.get("profile") if self.name == "cert.issue" else None
        return (f"{self.name}:{profile}", self.name) if profile else (self.name,)
