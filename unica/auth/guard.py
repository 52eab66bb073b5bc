"""Who acts, on whose authority: the one check every state-changing operation passes.

:func:`authorized` (a context manager around an operation's work) calls :func:`authorize`:

- With no operator in the database, unica runs as before operators existed: the actor is the
  OS user (``user@host:pid``), except that the first ``operator.add`` is the bootstrap.
- Once any operator exists, the operation needs an authenticated operator: an
  :class:`~unica.auth.proof.OperatorSigner` (the CLI's ``--as KEY_URI`` / ``UNICA_OPERATOR``),
  a :class:`~unica.auth.proof.Proof` made elsewhere, or an approved request being executed.
  The card's signature over the operation's digest is checked with the operator's stored
  certificate; the certificate must be current and neither it nor any CA above it revoked or on
  hold in this database; the nonce must be new; the operator must hold a role that may ask for
  the operation, within their RA office; and an approval rule may make the operation wait
  for more operators (:class:`~unica.errors.ApprovalPending`).

Refusals raise :class:`~unica.errors.NotAuthorized` (exit 3) and are audited (``auth.refused``).
While an operation runs, every audit entry it appends names the operator (and approvers):
:func:`unica.store.db.append_audit` reads :data:`unica.store.db.CURRENT_ACTOR`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from unica.auth.operation import CA_LEVEL_PROFILES, PERMITTED, Operation
from unica.auth.proof import MAX_SKEW, OperatorSigner, Proof, signature_ok
from unica.errors import ApprovalPending, NotAuthorized
from unica.store import models as m
from unica.store.db import ANY_OPERATOR, CURRENT_ACTOR, Store, append_audit

#: how long a request under dual control waits for its quorum
DEFAULT_REQUEST_LIFETIME = dt.timedelta(hours=24)

#: the office scope of an operation on one certificate: the certificate's office (None: a
#: CA-level certificate, or one issued before offices existed -- an admin's business)
UNSCOPED = object()

#: the office scope of a bulk operation: checked per certificate by the caller
#: (:meth:`Actor.may_act_on`); authorize only checks that the operator is an admin or an officer
PER_ITEM = object()


@dataclass(frozen=True)
class ApprovedExecution:
    """The authority of a request whose quorum approved it, while the claimant executes it."""

    request_id: str
    claim: str


@dataclass(frozen=True)
class TLSClient:
    """An operator authenticated by the TLS client certificate of a connection to the service.

    The TLS handshake proved possession of the certificate's key (a fresh signature over the
    handshake: no replay across connections), so no card signature per operation is asked;
    the certificate must be exactly an operator's stored certificate, and is checked like a
    card's (validity and revocation from the CA's rows, role, office, approval rules)."""

    cert_der: bytes


@dataclass(frozen=True)
class Actor:
    """Who is acting. ``name`` None: no operators exist (the OS user acts, as before)."""

    name: str | None = None
    serial: str | None = None
    subject: str | None = None
    roles: tuple[str, ...] = ()
    office: str | None = None
    operator_id: int | None = None
    approvers: tuple[dict, ...] = ()
    request_id: str | None = None
    bootstrap: bool = False

    @property
    def is_operator(self) -> bool:
        return self.name is not None

    @property
    def audit_actor(self) -> str | None:
        """The audit log's actor column (None: the OS user, as before operators)."""
        return None if self.name is None else f"{self.name} (operator {self.serial})"

    def audit_details(self) -> dict:
        if self.name is None:
            return {}
        out: dict = {"operator": {"name": self.name, "serial": self.serial, "subject": self.subject}}
        if self.request_id:
            out["approval_request"] = self.request_id
            out["approvers"] = list(self.approvers)
        return out

    def may_act_on(self, office: str | None) -> bool:
        """May this actor revoke, hold or release a certificate of ``office`` (None: CA-level)?"""
        if not self.is_operator:
            return True
        if office is None:
            return "admin" in self.roles
        return "ra-officer" in self.roles and self.office == office

    def to_dict(self) -> dict:
        return {"name": self.name, "serial": self.serial, "subject": self.subject, "roles": list(self.roles),
                "office": self.office, "approvers": list(self.approvers), "request": self.request_id}


LEGACY = Actor()


def describe(row: m.Operator) -> dict:
    return {"name": row.name, "serial": row.serial, "subject": row.subject_text}


def actor_of(row: m.Operator, **kw) -> Actor:
    return Actor(row.name, row.serial, row.subject_text, tuple(row.roles or ()), row.office, row.id, **kw)


# --- the operator's certificate ---------------------------------------------------------------


def certificate_problem(session, row: m.Operator, now: dt.datetime) -> str | None:
    """Why ``row``'s certificate gives no authority now (None: it does).

    The path was validated with :mod:`unica.verify` when the operator was added
    (:func:`unica.auth.operators.admit_certificate`); what can change since is time and
    revocation, checked here on every action: the certificate and every CA above it must be
    within their validity, and none of them revoked or on hold in this database."""
    if row.issuer_ca_id is None:
        return f"operator {row.name}'s certificate was not issued by a CA of this database"
    # the certificate's row as the CA recorded it (its validity is the certificate's own)
    found = session.execute(select(m.Certificate.status, m.Certificate.not_before, m.Certificate.not_after).where(
        m.Certificate.ca_id == row.issuer_ca_id, m.Certificate.serial == row.serial)).first()
    if found is None:
        return f"operator {row.name}'s certificate (serial {row.serial}) is not in this database"
    stored, not_before, not_after = found
    if now < not_before:
        return f"operator {row.name}'s certificate is not valid before {not_before:%Y-%m-%d %H:%M}Z"
    if now > not_after:
        return f"operator {row.name}'s certificate expired at {not_after:%Y-%m-%d %H:%M}Z"
    if stored in ("revoked", "hold"):
        return f"operator {row.name}'s certificate (serial {row.serial}) is {'on hold' if stored == 'hold' else 'revoked'}"
    if stored != "valid":
        return f"operator {row.name}'s certificate (serial {row.serial}) is {stored}"
    ca_id: int | None = row.issuer_ca_id
    seen = set()
    while ca_id is not None and ca_id not in seen:
        seen.add(ca_id)
        ca = session.get(m.CA, ca_id)
        if ca is None:
            return f"the CA that issued operator {row.name}'s certificate is gone"
        if ca.status != "active":
            return f"CA {ca.name}, above operator {row.name}'s certificate, is {ca.status}"
        if ca.not_after is not None and now > ca.not_after:
            return f"CA {ca.name}, above operator {row.name}'s certificate, expired"
        ca_id = ca.parent_id
    return None


# --- the check --------------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def refuse(store: Store, op: Operation, message: str, who: str | None = None) -> NotAuthorized:
    """Audit a refusal (``auth.refused``, in its own transaction) and return the exception to raise."""
    with store.write() as s:
        append_audit(s, "auth.refused", ca=op.ca, target=op.name,
                     details={"operation": op.name, "digest": op.digest(), "reason": message,
                              **({"operator": who} if who else {})})
    return NotAuthorized(message)


def _prove(auth, purpose: str, digest: str) -> Proof:
    if isinstance(auth, Proof):
        return auth
    if isinstance(auth, OperatorSigner) or hasattr(auth, "prove"):
        return auth.prove(purpose, digest)
    raise TypeError(f"auth must be an OperatorSigner, a Proof or None, not {type(auth).__name__}")


#: SubjectPublicKeyInfo prefixes of the EC keys an operator's card holds (named curve, uncompressed point)
_EC_SPKI = {bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200"): "secp256r1",
            bytes.fromhex("3076301006072a8648ce3d020106052b81040022036200"): "secp384r1"}


def operator_public_key(cert_der: bytes):
    """The public key of an operator certificate. The usual card key (EC P-256 / P-384) is read
    straight from the DER (an operator's every action checks one signature: without loading
    the X.509 machinery); anything else through cryptography's certificate parser."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from unica.der import cert_fields

    spki = cert_fields(cert_der)["spki"]
    for prefix, curve in _EC_SPKI.items():
        if spki.startswith(prefix):
            return ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1() if curve == "secp256r1" else ec.SECP384R1(), spki[len(prefix):])
    from cryptography import x509

    return x509.load_der_x509_certificate(cert_der).public_key()


def check_proof(session, proof: Proof, purpose: str, digest: str, now: dt.datetime) -> tuple[m.Operator | None, str | None]:
    """The operator a proof comes from, or why it is refused. Records the nonce (in ``session``)."""
    row = session.scalars(select(m.Operator).where(m.Operator.spki_sha256 == proof.spki_sha256)).first()
    if row is None:
        return None, "the card's key is not an operator's (no operator has that certificate)"
    if row.status != "active":
        return row, f"operator {row.name} is disabled"
    problem = certificate_problem(session, row, now)
    if problem:
        return row, problem
    if proof.purpose != purpose or proof.digest != digest:
        return row, f"operator {row.name}'s signature is for another request"
    if not signature_ok(operator_public_key(row.cert_der), proof.signature, proof.message()):
        return row, f"operator {row.name}'s signature does not verify with the operator's certificate"
    if proof.at.tzinfo is None or abs(proof.at - now) > MAX_SKEW:
        return row, f"operator {row.name}'s signature is not fresh (made {proof.at:%Y-%m-%d %H:%M:%S}Z)"
    try:
        with session.begin_nested():
            session.add(m.OperatorNonce(nonce=proof.nonce, operator_id=row.id, at=proof.at))
    except IntegrityError:
        return row, f"operator {row.name}'s signature was already used (a replay)"
    session.execute(delete(m.OperatorNonce).where(m.OperatorNonce.at < now - 2 * MAX_SKEW))
    return row, None


def scope_problem(session, row: m.Operator, op: Operation, target_office=UNSCOPED) -> str | None:
    """Why the operator's roles and office do not cover ``op`` (None: they do)."""
    roles = set(row.roles or ())
    if op.name == "cert.issue":
        profile = op.params.get("profile")
        if profile in CA_LEVEL_PROFILES:
            return None if "admin" in roles else (
                f"operator {row.name} may not issue {profile} certificates (an admin's work)")
        if "ra-officer" not in roles:
            return f"operator {row.name} is not an ra-officer (roles: {', '.join(sorted(roles)) or 'none'})"
        return _office_problem(session, row, op.ca, profile)
    if op.name in ("cert.revoke", "cert.hold", "cert.release"):
        if target_office is PER_ITEM:
            return None if roles & {"admin", "ra-officer"} else (
                f"operator {row.name} may not {op.name.split('.')[1]} certificates (needs role admin or ra-officer)")
        if target_office is UNSCOPED or target_office is None:
            return None if "admin" in roles else (
                f"operator {row.name} may not {op.name.split('.')[1]} this certificate: it belongs to no RA office "
                "(an admin's work)")
        if "ra-officer" not in roles:
            return f"operator {row.name} is not an ra-officer (roles: {', '.join(sorted(roles)) or 'none'})"
        if row.office != target_office:
            return (f"operator {row.name} (office {row.office or 'none'}) may not act on a certificate of "
                    f"office {target_office}")
        return None
    allowed = PERMITTED.get(op.name)
    if allowed is None:
        return f"unknown operation {op.name!r}"
    if not roles & allowed:
        return (f"operator {row.name} may not {op.name} (needs role {' or '.join(sorted(allowed))}; "
                f"has {', '.join(sorted(roles)) or 'none'})")
    return None


def _office_problem(session, row: m.Operator, ca: str | None, profile: str | None) -> str | None:
    if not row.office:
        return f"operator {row.name} belongs to no RA office"
    office = session.scalars(select(m.Office).where(m.Office.name == row.office)).first()
    if office is None:
        return f"operator {row.name}'s office {row.office} does not exist"
    if ca not in (office.cas or []):
        return f"office {office.name} may not use CA {ca} (its CAs: {', '.join(office.cas or []) or 'none'})"
    if profile not in (office.profiles or []):
        return (f"office {office.name} may not use profile {profile} "
                f"(its profiles: {', '.join(office.profiles or []) or 'none'})")
    return None


def rule_for(session, op: Operation) -> m.ApprovalRule | None:
    """The approval rule over ``op`` (None: no dual control). Once any rule exists, changing the
    rules is itself under dual control: an ``approval-rule.set`` rule, else the strictest rule."""
    for name in op.rule_names():
        rule = session.get(m.ApprovalRule, name)
        if rule is not None:
            return rule
    if op.name == "approval-rule.set":
        rules = session.scalars(select(m.ApprovalRule)).all()
        if rules:
            strictest = max(rules, key=lambda r: r.approvals)
            return m.ApprovalRule(operation="approval-rule.set", approvals=strictest.approvals, role=strictest.role)
    return None


def authorize(store: Store, op: Operation, auth=None, *, target_office=UNSCOPED,
              now: dt.datetime | None = None, lifetime: dt.timedelta = DEFAULT_REQUEST_LIFETIME) -> Actor:
    """Check that ``auth`` may run ``op`` now; return the :class:`Actor`.

    Raises :class:`NotAuthorized` (audited) or :class:`ApprovalPending` (the request is
    recorded; it runs when approved -- see :mod:`unica.auth.approvals`)."""
    now = now or _now()
    if not store.scalar(ANY_OPERATOR):  # a plain connection: this runs before every issuance
        return Actor(bootstrap=True) if op.name == "operator.add" else LEGACY
    if isinstance(auth, ApprovedExecution):
        from unica.auth.approvals import executing_actor

        return executing_actor(store, op, auth, now)
    if auth is None:
        raise refuse(store, op, f"{op.name} needs an authenticated operator: give --as KEY_URI (or set "
                                "UNICA_OPERATOR) to sign it with your card")
    if isinstance(auth, TLSClient):
        return _authorize_tls(store, op, auth, target_office, now)
    proof = _prove(auth, "request", op.digest())
    refusal = who = None
    pending = None
    with store.write() as s:
        row, refusal = check_proof(s, proof, "request", op.digest(), now)
        who = describe(row) if row is not None else None
        if refusal is None:
            refusal = scope_problem(s, row, op, target_office)
        if refusal is None:
            rule = rule_for(s, op)
            if rule is not None and rule.approvals > 1:
                pending = _open_request(s, op, rule, row, proof, now, lifetime)
        if refusal is not None:
            s.rollback()
    if refusal is not None:
        raise refuse(store, op, refusal, who=who)
    if pending is not None:
        raise pending
    return actor_of(row)


def _authorize_tls(store: Store, op: Operation, auth: TLSClient, target_office, now: dt.datetime) -> Actor:
    import hashlib

    from unica.der import DERError, cert_fields

    refusal = who = None
    with store.read() as s:
        try:
            spki = hashlib.sha256(cert_fields(auth.cert_der)["spki"]).hexdigest()
        except (DERError, ValueError, TypeError):  # not a certificate: no operator's
            spki = None
        row = None if spki is None else s.scalars(select(m.Operator).where(m.Operator.spki_sha256 == spki)).first()
        if row is None or row.cert_der != auth.cert_der:
            refusal = "the client certificate is not an operator's (no operator has that certificate)"
        else:
            who = describe(row)
            if row.status != "active":
                refusal = f"operator {row.name} is disabled"
            else:
                refusal = certificate_problem(s, row, now) or scope_problem(s, row, op, target_office)
            if refusal is None:
                rule = rule_for(s, op)
                if rule is not None and rule.approvals > 1:
                    refusal = (f"{op.name} is under dual control ({rule.approvals} approvals): ask for it with "
                               "--as on the command line, where each approver signs with the card")
    if refusal is not None:
        raise refuse(store, op, refusal, who=who)
    return actor_of(row)


def _open_request(s, op: Operation, rule: m.ApprovalRule, row: m.Operator, proof: Proof, now, lifetime):
    request_id = "r" + os.urandom(6).hex()
    counts = rule.role is None or rule.role in (row.roles or ())
    req = m.ApprovalRequest(id=request_id, operation=op.name, rule=rule.operation, ca_name=op.ca,
                            params=dict(op.params), digest=op.digest(), approvals_needed=rule.approvals,
                            role=rule.role, requester_id=row.id, status="pending", created_at=now,
                            expires_at=now + lifetime, result={})
    s.add(req)
    s.flush()
    s.add(m.Approval(request_id=request_id, operator_id=row.id, decision="request", nonce=proof.nonce,
                     signed_at=proof.at, signature=proof.signature))
    append_audit(s, "approval.requested", ca=op.ca, target=request_id,
                 actor=actor_of(row).audit_actor,
                 details={"operation": op.name, "rule": rule.operation, "digest": op.digest(),
                          "approvals_needed": rule.approvals, "role": rule.role, "requester": describe(row)})
    return ApprovalPending(request_id, op.name, rule.approvals, 1 if counts else 0, req.expires_at)


@contextlib.contextmanager
def authorized(store: Store, op: Operation, auth=None, **kw) -> Iterator[Actor]:
    """Authorize ``op``; while the block runs, audit entries name the actor.

    Inside an authorized operation, a step that is itself an operation (``ca create-sub``
    issuing the sub-CA's certificate, ``ocsp signer`` issuing the signer's) runs under the
    authority already checked: no second card signature."""
    current = CURRENT_ACTOR.get()
    if current is not None and auth is None:
        yield current
        return
    actor = authorize(store, op, auth, **kw)
    token = CURRENT_ACTOR.set(actor if actor.is_operator else None)
    try:
        yield actor
    finally:
        CURRENT_ACTOR.reset(token)
