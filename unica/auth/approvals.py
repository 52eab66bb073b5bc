"""Dual control: requests waiting for approvals, and deciding them.

A request is opened by :func:`unica.auth.guard.authorize` when an approval rule covers the
operation: it keeps the operation's parameters, their digest and the requester's card
signature. Each approver's card signs ``approve:ID`` (or ``reject:ID``) over the same digest.
The requester counts as one approval (if they hold the rule's role), no operator counts twice.

When an approval meets the quorum, :func:`decide` moves the request from ``pending`` to
``executing`` under a row lock and hands a *claim* to its caller, which runs the operation once
(:mod:`unica.ca.approvals`); two approvers at the same moment are serialised by the lock, so
only one of them sees the quorum met. Before the operation runs, the digest is computed again
from the operation as it will run and compared with the stored one, and every stored signature
is verified again (:func:`executing_actor`).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

from sqlalchemy import select

from unica.auth.guard import (ApprovedExecution, Actor, actor_of, check_proof, describe, operator_public_key,
                              refuse, scope_problem, _prove)
from unica.auth.operation import PERMITTED, Operation
from unica.auth.proof import signed_message, signature_ok
from unica.errors import InputError, NotAuthorized
from unica.store import models as m
from unica.store.db import Store, append_audit


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _request(session, request_id: str, *, lock: bool = False) -> m.ApprovalRequest:
    q = select(m.ApprovalRequest).where(m.ApprovalRequest.id == request_id)
    if lock:
        q = q.with_for_update()
    row = session.scalars(q).first()
    if row is None:
        raise InputError(f"no approval request {request_id!r} (see 'unica approval list')")
    return row


def _status(row: m.ApprovalRequest, now: dt.datetime) -> str:
    return "expired" if row.status == "pending" and now > row.expires_at else row.status


def request_info(session, row: m.ApprovalRequest, now: dt.datetime | None = None) -> dict:
    now = now or _now()
    decisions = session.execute(
        select(m.Approval, m.Operator).join(m.Operator, m.Operator.id == m.Approval.operator_id)
        .where(m.Approval.request_id == row.id).order_by(m.Approval.id)).all()
    have = _count(row, [(a, o) for a, o in decisions if a.decision in ("request", "approve")])
    return {"id": row.id, "operation": row.operation, "rule": row.rule, "ca": row.ca_name,
            "status": _status(row, now), "approvals": f"{have}/{row.approvals_needed}", "role": row.role,
            "digest": row.digest, "params": row.params, "created_at": row.created_at, "expires_at": row.expires_at,
            "decided_at": row.decided_at,
            "decisions": [{"operator": o.name, "serial": o.serial, "decision": a.decision, "at": a.signed_at,
                           "reason": a.reason} for a, o in decisions],
            "result": row.result or None}


def _count(row: m.ApprovalRequest, approvals) -> int:
    return len({o.id for a, o in approvals if row.role is None or row.role in (o.roles or ())})


def list_requests(store: Store, *, status: str | None = None) -> list[dict]:
    now = _now()
    with store.read() as s:
        rows = s.scalars(select(m.ApprovalRequest).order_by(m.ApprovalRequest.created_at)).all()
        out = [request_info(s, r, now) for r in rows]
    return [r for r in out if status is None or r["status"] == status]


def show_request(store: Store, request_id: str) -> dict:
    with store.read() as s:
        return request_info(s, _request(s, request_id))


@dataclass(frozen=True)
class Decision:
    """What :func:`decide` did: the request as it now is, and the claim to execute it (if the
    quorum was met by this decision)."""

    request: dict
    claim: str | None = None

    @property
    def execution(self) -> ApprovedExecution | None:
        return ApprovedExecution(self.request["id"], self.claim) if self.claim else None


def decide(store: Store, request_id: str, auth, decision: str, *, reason: str | None = None,
           now: dt.datetime | None = None) -> Decision:
    """Record an approver's signed ``approve`` or ``reject`` of a request."""
    if decision not in ("approve", "reject"):
        raise ValueError("decision is 'approve' or 'reject'")
    now = now or _now()
    with store.read() as s:
        found = _request(s, request_id)
        digest, op_name = found.digest, found.operation
    op = Operation(f"approval.{decision}", params={"request": request_id})
    if auth is None:
        raise refuse(store, op, f"approving or rejecting needs an authenticated operator: give --as KEY_URI "
                                "(or set UNICA_OPERATOR)")
    proof = _prove(auth, f"{decision}:{request_id}", digest)
    refusal = who = None
    claim = None
    with store.write() as s:
        row = _request(s, request_id, lock=True)
        operator, refusal = check_proof(s, proof, f"{decision}:{request_id}", digest, now)
        who = describe(operator) if operator is not None else None
        if refusal is None:
            refusal = _decision_problem(s, row, operator, now)
        if refusal is None:
            s.add(m.Approval(request_id=row.id, operator_id=operator.id, decision=decision, nonce=proof.nonce,
                             signed_at=proof.at, signature=proof.signature, reason=reason))
            s.flush()
            append_audit(s, f"approval.{decision}d" if decision == "approve" else "approval.rejected",
                         ca=row.ca_name, target=row.id, actor=actor_of(operator).audit_actor,
                         details={"operation": op_name, "digest": digest, "approver": describe(operator),
                                  **({"reason": reason} if reason else {})})
            if decision == "reject":
                row.status, row.decided_at = "rejected", now
            else:
                approvals = s.execute(
                    select(m.Approval, m.Operator).join(m.Operator, m.Operator.id == m.Approval.operator_id)
                    .where(m.Approval.request_id == row.id, m.Approval.decision.in_(("request", "approve")))).all()
                if _count(row, approvals) >= row.approvals_needed:
                    claim = os.urandom(8).hex()
                    row.status, row.decided_at, row.result = "executing", now, {"claim": claim}
            info = request_info(s, row, now)
        else:
            s.rollback()
    if refusal is not None:
        raise refuse(store, Operation(op_name, ca=None, params={"request": request_id}), refusal, who=who)
    return Decision(info, claim)


def _decision_problem(s, row: m.ApprovalRequest, operator: m.Operator, now: dt.datetime) -> str | None:
    status = _status(row, now)
    if status == "expired":
        return f"request {row.id} expired at {row.expires_at:%Y-%m-%d %H:%M}Z"
    if status != "pending":
        return f"request {row.id} is {status}, no longer pending"
    done = s.scalars(select(m.Approval).where(m.Approval.request_id == row.id,
                                              m.Approval.operator_id == operator.id)).first()
    if done is not None:
        return (f"operator {operator.name} {'asked for' if done.decision == 'request' else done.decision + 'd'} "
                f"request {row.id} already: no operator counts twice")
    roles = set(operator.roles or ())
    if row.role is not None:
        if row.role not in roles:
            return f"request {row.id} needs approvals by role {row.role}; operator {operator.name} is not one"
    else:
        base = row.operation
        allowed = PERMITTED.get(base, frozenset()) | {"admin"}
        if not roles & allowed:
            return (f"operator {operator.name} may not approve {base} (needs role "
                    f"{' or '.join(sorted(allowed))})")
    return None


def executing_actor(store: Store, op: Operation, auth: ApprovedExecution, now: dt.datetime) -> Actor:
    """The authority of an approved request as it runs: the claim must be this one, the
    operation's digest must be the approved one, and every signature must verify again."""
    with store.read() as s:
        row = s.get(m.ApprovalRequest, auth.request_id)
        if row is None or row.status != "executing" or (row.result or {}).get("claim") != auth.claim:
            raise NotAuthorized(f"request {auth.request_id} is not being executed by this process")
        if row.operation != op.name or row.ca_name != op.ca or row.digest != op.digest():
            raise refuse(store, op, f"what would run differs from what request {row.id} approved (digest "
                                    f"{op.digest()[:16]}... is not {row.digest[:16]}...)")
        approvals = s.execute(
            select(m.Approval, m.Operator).join(m.Operator, m.Operator.id == m.Approval.operator_id)
            .where(m.Approval.request_id == row.id, m.Approval.decision.in_(("request", "approve")))
            .order_by(m.Approval.id)).all()
        names = []
        for a, o in approvals:
            purpose = "request" if a.decision == "request" else f"approve:{row.id}"
            pub = operator_public_key(o.cert_der)
            if not signature_ok(pub, a.signature, signed_message(purpose, row.digest, a.nonce, a.signed_at)):
                raise refuse(store, op, f"operator {o.name}'s signature on request {row.id} does not verify")
            names.append(describe(o))
        requester = s.get(m.Operator, row.requester_id)
        return actor_of(requester, approvers=tuple(names), request_id=row.id)


def finish(store: Store, execution: ApprovedExecution, *, result: dict | None = None,
           error: str | None = None) -> dict:
    """Record how an approved request's execution ended (``executed`` or ``failed``)."""
    with store.write() as s:
        row = _request(s, execution.request_id, lock=True)
        if (row.result or {}).get("claim") != execution.claim:
            raise NotAuthorized(f"request {row.id} is not being executed by this process")
        row.status = "failed" if error else "executed"
        row.result = {"error": error} if error else (result or {})
        append_audit(s, "approval.failed" if error else "approval.executed", ca=row.ca_name, target=row.id,
                     details={"operation": row.operation, "digest": row.digest, **({"error": error} if error else {})})
        return request_info(s, row)
