"""Operators, RA offices and approval rules: managing them (each change is itself authorized).

Every function that changes something takes ``auth`` (see :mod:`unica.auth.guard`) and runs
under :func:`~unica.auth.guard.authorized`; the first :func:`add_operator` on an empty operator
table is the bootstrap of the first admin.
"""

from __future__ import annotations

import base64
import datetime as dt
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select

from unica.auth.guard import authorized, certificate_problem, describe
from unica.auth.operation import ROLES, RULE_OPERATIONS, Operation
from unica.auth.proof import spki_sha256_of
from unica.errors import InputError, NotAuthorized, PolicyViolation
from unica.store import models as m
from unica.store.db import Store, append_audit

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"bad {what} name {name!r}: letters, digits, '.', '_', '@', '-' (at most 64)")


def _roles(roles) -> list[str]:
    out = sorted(set(roles))
    if not out:
        raise InputError("an operator needs at least one --role")
    bad = [r for r in out if r not in ROLES]
    if bad:
        raise InputError(f"unknown role {bad[0]!r} (roles: {', '.join(ROLES)})")
    return out


def load_certificate(data: bytes) -> x509.Certificate:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise InputError("the operator certificate is not a PEM or DER X.509 certificate") from None


# --- admission --------------------------------------------------------------------------------


def _issuer_row(session, cert: x509.Certificate) -> m.CA | None:
    for ca in session.scalars(select(m.CA).where(m.CA.subject_der == cert.issuer.public_bytes())):
        if ca.cert_der is None:
            continue
        try:
            cert.verify_directly_issued_by(x509.load_der_x509_certificate(ca.cert_der))
        except (ValueError, TypeError, Exception):  # noqa: BLE001 - any failure: not this CA
            continue
        return ca
    return None


def _chain(session, ca: m.CA) -> list[x509.Certificate]:
    out, seen = [], set()
    while ca is not None and ca.id not in seen:
        seen.add(ca.id)
        out.append(x509.load_der_x509_certificate(ca.cert_der))
        ca = session.get(m.CA, ca.parent_id) if ca.parent_id else None
    return out


def admit_certificate(session, cert: x509.Certificate, now: dt.datetime) -> tuple[m.CA, str]:
    """The issuing CA of an operator certificate and its stored serial, after checking it:
    issued by a CA of this database under the ``operator`` profile, valid there, and its path
    validated by :mod:`unica.verify` (RFC 5280, client authentication)."""
    ca = _issuer_row(session, cert)
    if ca is None:
        raise PolicyViolation("the operator certificate was not issued by a CA of this database")
    serial = m.serial_hex(cert.serial_number)
    row = session.scalars(select(m.Certificate).where(m.Certificate.ca_id == ca.id,
                                                      m.Certificate.serial == serial)).first()
    if row is None:
        raise PolicyViolation(f"the operator certificate (serial {serial}) is not recorded by CA {ca.name}")
    if row.profile != "operator":
        raise PolicyViolation(f"the certificate (serial {serial}) was issued under profile {row.profile}, "
                              "not 'operator'")
    if row.status != "valid":
        raise PolicyViolation(f"the operator certificate (serial {serial}) is {row.status}")
    from unica.verify import OFF, validate_certificate

    chain = _chain(session, ca)
    report = validate_certificate(cert, trust=[chain[-1]], intermediates=chain[:-1], at=now,
                                  usage="client-auth", revocation=OFF)
    if not report.passed:
        raise PolicyViolation(f"the operator certificate does not validate: {'; '.join(report.messages) or report.sub_indication}")
    return ca, serial


# --- operators --------------------------------------------------------------------------------


def _operator(session, name: str) -> m.Operator:
    row = session.scalars(select(m.Operator).where(m.Operator.name == name)).first()
    if row is None:
        raise InputError(f"no operator {name!r} (see 'unica operator list')")
    return row


def operator_info(row: m.Operator, session=None, now: dt.datetime | None = None) -> dict:
    cert = x509.load_der_x509_certificate(row.cert_der)
    info = {"name": row.name, "roles": list(row.roles or ()), "office": row.office, "status": row.status,
            "serial": row.serial, "subject": row.subject_text, "spki_sha256": row.spki_sha256,
            "not_after": cert.not_valid_after_utc, "created_at": row.created_at, "disabled_at": row.disabled_at}
    if session is not None:
        info["certificate"] = certificate_problem(session, row, now or m.utcnow()) or "valid"
    return info


def add_operation(name: str, roles, cert_der: bytes, office: str | None) -> Operation:
    return Operation("operator.add", params={"name": name, "roles": _roles(roles), "office": office,
                                            "cert": base64.b64encode(cert_der).decode()})


def add_operator(store: Store, name: str, roles, cert: bytes | x509.Certificate, *, office: str | None = None,
                 auth=None, now: dt.datetime | None = None) -> dict:
    """Add an operator: a person, the certificate on their card, roles and an RA office."""
    _check_name(name, "operator")
    if office is not None:
        _check_name(office, "office")
    c = cert if isinstance(cert, x509.Certificate) else load_certificate(cert)
    der = c.public_bytes(serialization.Encoding.DER)
    roles = _roles(roles)
    if "ra-officer" in roles and not office:
        raise InputError("an ra-officer needs an RA office (--office NAME)")
    op = add_operation(name, roles, der, office)
    with authorized(store, op, auth, now=now) as actor:
        now = now or m.utcnow()
        spki = spki_sha256_of(c.public_key())
        if actor.is_operator and actor.operator_id is not None:
            with store.read() as s:
                me = s.get(m.Operator, actor.operator_id)
                if me is not None and me.spki_sha256 == spki:
                    raise _refused(store, op, "nobody can grant themselves a role: that certificate is the "
                                              "requesting operator's own card", actor)
        with store.write() as s:
            count = s.scalar(select(func.count()).select_from(m.Operator))
            if actor.bootstrap and count:
                raise NotAuthorized("operators exist already: adding one needs an authenticated admin (--as)")
            if actor.bootstrap and "admin" not in roles:
                raise PolicyViolation("the first operator bootstraps the CA's administration: give --role admin")
            if s.scalars(select(m.Operator).where(m.Operator.name == name)).first() is not None:
                raise InputError(f"operator {name!r} exists already")
            if s.scalars(select(m.Operator).where(m.Operator.spki_sha256 == spki)).first() is not None:
                raise InputError("that card's key belongs to another operator already")
            if office is not None and s.scalars(select(m.Office).where(m.Office.name == office)).first() is None:
                raise InputError(f"no RA office {office!r} (see 'unica office list')")
            ca, serial = admit_certificate(s, c, now)
            row = m.Operator(name=name, cert_der=der, serial=serial, issuer_ca_id=ca.id,
                             subject_text=c.subject.rfc4514_string(), spki_sha256=spki, roles=roles, office=office,
                             status="active", created_at=now)
            s.add(row)
            s.flush()
            append_audit(s, "operator.bootstrap" if actor.bootstrap else "operator.added", target=name,
                         details={"new_operator": describe(row), "roles": roles, "office": office,
                                  "issuer_ca": ca.name})
            return operator_info(row)


def _refused(store: Store, op: Operation, message: str, actor) -> NotAuthorized:
    from unica.auth.guard import refuse

    return refuse(store, op, message, who={"name": actor.name, "serial": actor.serial, "subject": actor.subject})


def _active_admins(session) -> list[m.Operator]:
    rows = session.scalars(select(m.Operator).where(m.Operator.status == "active")).all()
    return [r for r in rows if "admin" in (r.roles or ())]


def disable_operator(store: Store, name: str, *, auth=None, now: dt.datetime | None = None) -> dict:
    """Disable an operator (their card no longer acts). The last active admin cannot be disabled."""
    op = Operation("operator.disable", params={"name": name})
    with store.read() as s:
        _operator(s, name)
    with authorized(store, op, auth, now=now) as actor:
        with store.write() as s:
            row = _operator(s, name)
            if row.status == "disabled":
                raise InputError(f"operator {name} is disabled already")
            if "admin" in (row.roles or ()) and len(_active_admins(s)) <= 1:
                raise _refused_after(store, op, f"operator {name} is the last active admin: add another admin first",
                                     actor, s)
            row.status, row.disabled_at = "disabled", now or m.utcnow()
            append_audit(s, "operator.disabled", target=name, details={"disabled_operator": describe(row)})
            return operator_info(row)


def _refused_after(store, op, message, actor, session) -> NotAuthorized:
    session.rollback()
    return _refused(store, op, message, actor)


def set_operator(store: Store, name: str, *, roles=None, office: str | None = None, auth=None,
                 now: dt.datetime | None = None) -> dict:
    """Change an operator's roles or office. Nobody changes their own; the last admin keeps admin."""
    params = {"name": name, "roles": _roles(roles) if roles is not None else None, "office": office}
    op = Operation("operator.set", params=params)
    with authorized(store, op, auth, now=now) as actor:
        with store.write() as s:
            row = _operator(s, name)
            if actor.is_operator and row.id == actor.operator_id:
                raise _refused_after(store, op, "nobody can grant themselves a role or change their own office",
                                     actor, s)
            new_roles = params["roles"] if params["roles"] is not None else list(row.roles or ())
            if ("admin" in (row.roles or ()) and "admin" not in new_roles and row.status == "active"
                    and len(_active_admins(s)) <= 1):
                raise _refused_after(store, op, f"operator {name} is the last active admin", actor, s)
            if office is not None and s.scalars(select(m.Office).where(m.Office.name == office)).first() is None:
                raise InputError(f"no RA office {office!r}")
            new_office = office if office is not None else row.office
            if "ra-officer" in new_roles and not new_office:
                raise InputError("an ra-officer needs an RA office (--office NAME)")
            row.roles, row.office = new_roles, new_office
            append_audit(s, "operator.changed", target=name, details={"roles": new_roles, "office": new_office})
            return operator_info(row)


def list_operators(store: Store) -> list[dict]:
    with store.read() as s:
        now = m.utcnow()
        return [operator_info(r, s, now) for r in s.scalars(select(m.Operator).order_by(m.Operator.name))]


def show_operator(store: Store, name: str) -> dict:
    with store.read() as s:
        return operator_info(_operator(s, name), s)


# --- RA offices -------------------------------------------------------------------------------


def office_info(row: m.Office, members: list[str] | None = None) -> dict:
    out = {"name": row.name, "cas": list(row.cas or ()), "profiles": list(row.profiles or ()),
           "created_at": row.created_at}
    if members is not None:
        out["officers"] = members
    return out


def set_office(store: Store, name: str, *, cas=None, profiles=None, create: bool = False, auth=None,
               now: dt.datetime | None = None) -> dict:
    """Create (``create``) or change an RA office: the CAs and profiles its officers may use."""
    _check_name(name, "office")
    cas_l = sorted(set(cas)) if cas is not None else None
    prof_l = sorted(set(profiles)) if profiles is not None else None
    if create and (not cas_l or not prof_l):
        raise InputError("an office needs at least one --ca and one --profile")
    from unica.policies import get_profile

    for p in prof_l or ():
        get_profile(p)  # ProfileNotFound: exit 2
    op = Operation("office.set", params={"name": name, "cas": cas_l, "profiles": prof_l, "create": create})
    with authorized(store, op, auth, now=now):
        with store.write() as s:
            for c in cas_l or ():
                if s.scalars(select(m.CA).where(m.CA.name == c)).first() is None:
                    raise InputError(f"no CA {c!r}")
            row = s.scalars(select(m.Office).where(m.Office.name == name)).first()
            if create:
                if row is not None:
                    raise InputError(f"office {name!r} exists already (use 'unica office set')")
                row = m.Office(name=name, cas=cas_l, profiles=prof_l, created_at=now or m.utcnow())
                s.add(row)
            else:
                if row is None:
                    raise InputError(f"no RA office {name!r} (use 'unica office add')")
                if cas_l is not None:
                    row.cas = cas_l
                if prof_l is not None:
                    row.profiles = prof_l
            s.flush()
            append_audit(s, "office.added" if create else "office.changed", target=name,
                         details={"cas": row.cas, "profiles": row.profiles})
            return office_info(row)


def list_offices(store: Store) -> list[dict]:
    with store.read() as s:
        return [office_info(r, _members(s, r.name)) for r in s.scalars(select(m.Office).order_by(m.Office.name))]


def _members(s, office: str) -> list[str]:
    return list(s.scalars(select(m.Operator.name).where(m.Operator.office == office).order_by(m.Operator.name)))


def show_office(store: Store, name: str) -> dict:
    with store.read() as s:
        row = s.scalars(select(m.Office).where(m.Office.name == name)).first()
        if row is None:
            raise InputError(f"no RA office {name!r} (see 'unica office list')")
        return office_info(row, _members(s, name))


# --- approval rules ---------------------------------------------------------------------------


def check_rule_operation(operation: str) -> None:
    base, _, profile = operation.partition(":")
    if base not in RULE_OPERATIONS or (profile and base != "cert.issue"):
        raise InputError(f"unknown operation {operation!r} for an approval rule "
                         f"(one of: {', '.join(RULE_OPERATIONS)}, or cert.issue:PROFILE)")
    if profile:
        from unica.policies import get_profile

        get_profile(profile)


def set_rule(store: Store, operation: str, approvals: int, *, role: str | None = None, auth=None,
             now: dt.datetime | None = None) -> dict:
    """Make ``operation`` wait for ``approvals`` distinct operators (``approvals`` 1: no rule)."""
    check_rule_operation(operation)
    if not 1 <= approvals <= 16:
        raise InputError("--approvals must be between 1 and 16")
    if role is not None and role not in ROLES:
        raise InputError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    op = Operation("approval-rule.set", params={"operation": operation, "approvals": approvals, "role": role})
    with authorized(store, op, auth, now=now):
        with store.write() as s:
            row = s.get(m.ApprovalRule, operation)
            if approvals == 1:
                if row is not None:
                    s.delete(row)
            elif row is None:
                s.add(m.ApprovalRule(operation=operation, approvals=approvals, role=role, updated_at=now or m.utcnow()))
            else:
                row.approvals, row.role, row.updated_at = approvals, role, now or m.utcnow()
            append_audit(s, "approval-rule.set", target=operation, details={"approvals": approvals, "role": role})
            return {"operation": operation, "approvals": approvals, "role": role}


def list_rules(store: Store) -> list[dict]:
    with store.read() as s:
        return [{"operation": r.operation, "approvals": r.approvals, "role": r.role, "updated_at": r.updated_at}
                for r in s.scalars(select(m.ApprovalRule).order_by(m.ApprovalRule.operation))]
