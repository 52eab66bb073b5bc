"""``unica enterprise``, ``application`` and ``revocation-request``: the registry of the CA as a service.

RA officers register enterprises and make applications with their card (``--as KEY_URI``, else
``UNICA_OPERATOR``). An application approved under its profile's rule (``cert.issue:PROFILE``;
no rule: the creating officer's approval suffices) prints its one-time enrollment code, once:
the enterprise enrolls with it over EST (``unica serve``).
"""

from __future__ import annotations

import click

from unica.cli.acting import as_option, operator_auth
from unica.cli.ca import _store, db_option
from unica.cli.common import emit_json, json_option, show_fields, table
from unica.cli.completion import complete_ca, complete_profile

APPLICATION_STATES = ("submitted", "approved", "rejected", "enrolled", "expired")
REQUEST_STATES = ("pending", "done", "rejected")


def _when(t) -> str | None:
    return t.strftime("%Y-%m-%d %H:%M") + "Z" if t is not None else None


# --- enterprises ------------------------------------------------------------------------------


@click.group("enterprise")
def enterprise_group() -> None:
    """Registered enterprises: USCC, name, legal representative, RA office."""


@enterprise_group.command("add")
@click.option("--uscc", required=True, metavar="CODE",
              help="The Unified Social Credit Code (check character verified).")
@click.option("--name", required=True, metavar="NAME", help="The registered name (the certificates' O).")
@click.option("--office", required=True, metavar="NAME", help="The RA office the enterprise belongs to.")
@click.option("--legal-rep", default=None, metavar="NAME", help="The legal representative.")
@as_option
@db_option
@json_option
def enterprise_add(uscc, name, office, legal_rep, db, as_json) -> None:
    """Register an enterprise (an admin, or an RA officer of the office).

    \b
    Examples:
      unica enterprise add --uscc 91350100M000100Y43 --name 示例科技有限公司 --office customs \\
          --as 'pkcs11:token=bob;object=operator'
    """
    from unica.ra import add_enterprise

    info = add_enterprise(_store(db), uscc=uscc, name=name, office=office, legal_rep=legal_rep, auth=operator_auth())
    if as_json:
        emit_json(info)
    else:
        click.echo(f"enterprise {info['uscc']} {info['name']} registered in office {info['office']}")


def _set_enterprise_status(uscc, reason, db, as_json, *, enabled: bool) -> None:
    from unica.ra import set_enterprise_status

    info = set_enterprise_status(_store(db), uscc, enabled=enabled, reason=reason, auth=operator_auth())
    if as_json:
        emit_json(info)
    else:
        click.echo(f"enterprise {info['uscc']} {info['name']} is {info['status']}")


@enterprise_group.command("disable")
@click.argument("uscc", metavar="CODE")
@click.option("--reason", required=True, metavar="TEXT", help="Why (recorded in the audit log).")
@as_option
@db_option
@json_option
def enterprise_disable(uscc, reason, db, as_json) -> None:
    """Disable an enterprise: no application, enrollment or re-enrollment for it (its
    certificates stay as they are: revoke them with 'unica cert revoke'). An admin, or an RA officer
    of its office.

    \b
    Examples:
      unica enterprise disable 91350100M000100Y43 --reason 'licence revoked' \\
          --as 'pkcs11:token=bob;object=operator'
    """
    _set_enterprise_status(uscc, reason, db, as_json, enabled=False)


@enterprise_group.command("enable")
@click.argument("uscc", metavar="CODE")
@click.option("--reason", required=True, metavar="TEXT", help="Why (recorded in the audit log).")
@as_option
@db_option
@json_option
def enterprise_enable(uscc, reason, db, as_json) -> None:
    """Enable a disabled enterprise again. An admin, or an RA officer of its office.

    \b
    Examples:
      unica enterprise enable 91350100M000100Y43 --reason 'licence restored' \\
          --as 'pkcs11:token=bob;object=operator'
    """
    _set_enterprise_status(uscc, reason, db, as_json, enabled=True)


@enterprise_group.command("list")
@click.option("--office", default=None, metavar="NAME", help="Only the enterprises of this RA office.")
@click.option("--query", default=None, metavar="TEXT", help="Only those whose name or USCC contains TEXT.")
@db_option
@json_option
def enterprise_list(office, query, db, as_json) -> None:
    """List registered enterprises.

    \b
    Examples:
      unica enterprise list --office customs
      unica enterprise list --query 示例 --json
    """
    from unica.ra import list_enterprises

    rows = list_enterprises(_store(db), office=office, query=query)
    if as_json:
        emit_json(rows)
        return
    table([[r["uscc"], r["name"], r["office"], r["status"], r["legal_rep"]] for r in rows],
          ["USCC", "NAME", "OFFICE", "STATUS", "LEGAL REP"])


@enterprise_group.command("show")
@click.argument("uscc", metavar="CODE")
@db_option
@json_option
def enterprise_show(uscc, db, as_json) -> None:
    """Show an enterprise, its applications and certificates.

    \b
    Examples:
      unica enterprise show 91350100M000100Y43
    """
    from unica.ra import enterprise_applications, enterprise_certificates, get_enterprise

    store = _store(db)
    info = get_enterprise(store, uscc)
    apps = enterprise_applications(store, info["uscc"])
    certs = enterprise_certificates(store, info["uscc"])
    if as_json:
        emit_json(info | {"applications": apps, "certificates": certs})
        return
    show_fields({k: v for k, v in info.items() if k != "id"})
    click.echo("applications:")
    for a in apps:
        click.echo(f"  {a['id']}  {a['status']:<9} {a['profile']}  {a['holder']}")
    click.echo("certificates:")
    for c in certs:
        click.echo(f"  {c['serial']}  {c['status']:<7} {c['profile']}  until {_when(c['not_after'])}")


# --- applications -----------------------------------------------------------------------------


@click.group("application")
def application_group() -> None:
    """Applications for certificates: create, approve under dual control, reject; the one-time code."""


def _said(info: dict, as_json: bool) -> None:
    """An application after a change: its state and, when it was released here, the code."""
    if as_json:
        emit_json(info)
        return
    click.echo(f"application {info['id']}: {info['status']} ({info['approvals']} of {info['needed']} approvals)"
               f" -- {info['holder']}, {info['enterprise']} ({info['uscc']}), profile {info['profile']}, "
               f"CA {info['ca_name']}")
    if info.get("code"):
        click.echo(f"code: {info['code']}")
        click.echo(f"  (shown once; valid until {_when(info['code_expires_at'])}; give it to the holder, who "
                   "enrolls with the application id and this code)")
    elif info["status"] == "submitted":
        click.echo(f"  waiting for {info['needed'] - info['approvals']} more officer(s) of office {info['office']}: "
                   f"unica application approve {info['id']} --as CARD")
    elif info["status"] == "approved" and info["source"] == "self-service":
        click.echo("  the applicant receives the code at its next status poll")


@application_group.command("create")
@click.option("--uscc", required=True, metavar="CODE", help="The enterprise's USCC (registered).")
@click.option("--profile", required=True, shell_complete=complete_profile, metavar="NAME",
              help="The certificate profile, e.g. enterprise-sign.")
@click.option("--holder", required=True, metavar="NAME", help="The holder's name (the certificate's CN).")
@click.option("--ca", default=None, shell_complete=complete_ca, metavar="NAME",
              help="The issuing CA (default: the office's, when it has one).")
@click.option("--code-lifetime", default="7d", show_default=True, metavar="DURATION",
              help="How long the code is valid once released (5m to 90d).")
@as_option
@db_option
@json_option
def application_create(uscc, profile, holder, ca, code_lifetime, db, as_json) -> None:
    """Create an application: your approval counts as the first. When the profile's rule needs no
    more, prints the application id and the one-time enrollment code (shown this once).

    \b
    Examples:
      unica application create --uscc 91350100M000100Y43 --profile enterprise-sign --holder 张三 \\
          --as 'pkcs11:token=bob;object=operator'
    """
    from unica.errors import InputError
    from unica.policies.duration import parse_duration
    from unica.ra import create_application

    try:
        lifetime = parse_duration(code_lifetime)
    except ValueError as e:
        raise InputError(f"--code-lifetime: {e}") from None
    _said(create_application(_store(db), uscc=uscc, profile=profile, holder=holder, ca=ca, lifetime=lifetime,
                             auth=operator_auth()), as_json)


@application_group.command("list")
@click.option("--office", default=None, metavar="NAME", help="Only the applications of this RA office.")
@click.option("--uscc", default=None, metavar="CODE", help="Only this enterprise's.")
@click.option("--status", default=None, metavar="STATUS",
              help="Only in this state: " + ", ".join(APPLICATION_STATES) + ".")
@db_option
@json_option
def application_list(office, uscc, status, db, as_json) -> None:
    """List applications, newest first.

    \b
    Examples:
      unica application list --office customs --status submitted
    """
    from unica.ra import list_applications

    rows = list_applications(_store(db), office=office, uscc=uscc, status=status)
    if as_json:
        emit_json(rows)
        return
    table([[r["id"], r["status"], f"{r['approvals']}/{r['needed']}", r["office"], r["uscc"], r["enterprise"],
            r["holder"], r["profile"], r["source"], _when(r["created_at"])] for r in rows],
          ["ID", "STATUS", "APPROVALS", "OFFICE", "USCC", "ENTERPRISE", "HOLDER", "PROFILE", "SOURCE", "CREATED"])


@application_group.command("show")
@click.argument("app_id", metavar="ID")
@db_option
@json_option
def application_show(app_id, db, as_json) -> None:
    """Show an application and who decided what (never its code).

    \b
    Examples:
      unica application show a3f2a9c1b7d04
    """
    from unica.ra import get_application

    info = get_application(_store(db), app_id)
    if as_json:
        emit_json(info)
        return
    decisions = info.pop("decisions")
    show_fields({k: v for k, v in info.items() if k not in ("ca", "approval_role")})
    click.echo("decisions:")
    for d in decisions:
        click.echo(f"  {d['at']:%Y-%m-%d %H:%M:%S}Z  {d['decision']:<8} {d['operator']} (serial {d['serial']})"
                   + (f": {d['reason']}" if d.get("reason") else ""))


@application_group.command("approve")
@click.argument("app_id", metavar="ID")
@click.option("--reason", default=None, metavar="TEXT", help="Why (recorded with the decision).")
@as_option
@db_option
@json_option
def application_approve(app_id, reason, db, as_json) -> None:
    """Approve an application with your card (an RA officer of its office, not one who decided on it
    already). The approval that meets the profile's rule prints the code of an officer's application.

    \b
    Examples:
      unica application approve a3f2a9c1b7d04 --reason "documents checked" --as 'pkcs11:token=carol;object=operator'
    """
    from unica.ra import decide_application

    _said(decide_application(_store(db), app_id, approve=True, reason=reason, auth=operator_auth()), as_json)


@application_group.command("reject")
@click.argument("app_id", metavar="ID")
@click.option("--reason", required=True, metavar="TEXT", help="Why (recorded; the applicant sees it).")
@as_option
@db_option
@json_option
def application_reject(app_id, reason, db, as_json) -> None:
    """Reject an application with your card: it ends there.

    \b
    Examples:
      unica application reject a3f2a9c1b7d04 --reason "not a customer of this office" --as "$MY_CARD"
    """
    from unica.ra import decide_application

    info = decide_application(_store(db), app_id, approve=False, reason=reason, auth=operator_auth())
    emit_json(info) if as_json else click.echo(f"application {app_id} rejected")


# --- revocation requests ----------------------------------------------------------------------


@click.group("revocation-request")
def revocation_group() -> None:
    """Enterprises' requests to revoke their certificates: keyCompromise is revoked at once; others wait here."""


def _show_request(info: dict, as_json: bool) -> None:
    emit_json(info) if as_json else show_fields(info)


@revocation_group.command("list")
@click.option("--office", default=None, metavar="NAME", help="Only the requests of this RA office.")
@click.option("--status", default=None, metavar="STATUS",
              help="Only in this state: " + ", ".join(REQUEST_STATES) + ".")
@db_option
@json_option
def revocation_list(office, status, db, as_json) -> None:
    """List revocation requests, newest first.

    \b
    Examples:
      unica revocation-request list --office customs --status pending
    """
    from unica.ra import list_revocation_requests

    rows = list_revocation_requests(_store(db), office=office, status=status)
    if as_json:
        emit_json(rows)
        return
    table([[r["id"], r["status"], r["reason"], r["ca"], r["serial"], r["uscc"], r["enterprise"], r["office"],
            _when(r["created_at"])] for r in rows],
          ["ID", "STATUS", "REASON", "CA", "SERIAL", "USCC", "ENTERPRISE", "OFFICE", "CREATED"])


@revocation_group.command("show")
@click.argument("request_id", metavar="ID")
@db_option
@json_option
def revocation_show(request_id, db, as_json) -> None:
    """Show a revocation request.

    \b
    Examples:
      unica revocation-request show v3f2a9c1b7d04
    """
    from unica.ra import get_revocation_request

    _show_request(get_revocation_request(_store(db), request_id), as_json)


@revocation_group.command("approve")
@click.argument("request_id", metavar="ID")
@click.option("--reason", default=None, metavar="TEXT", help="Why (recorded with the decision).")
@as_option
@db_option
@json_option
def revocation_approve(request_id, reason, db, as_json) -> None:
    """Revoke the certificate a request names, for the reason the enterprise gave (an RA officer of
    its office). OCSP answers revoked at once; the next CRL lists it.

    \b
    Examples:
      unica revocation-request approve v3f2a9c1b7d04 --as 'pkcs11:token=bob;object=operator'
    """
    from unica.ra import decide_revocation

    info = decide_revocation(_store(db), request_id, True, reason, auth=operator_auth())
    if as_json:
        emit_json(info)
    else:
        click.echo(f"revocation request {request_id} done: certificate {info['serial']} of CA {info['ca']} revoked "
                   f"({info['reason']})")


@revocation_group.command("reject")
@click.argument("request_id", metavar="ID")
@click.option("--reason", required=True, metavar="TEXT", help="Why (recorded; the enterprise sees the status).")
@as_option
@db_option
@json_option
def revocation_reject(request_id, reason, db, as_json) -> None:
    """Decline a revocation request (the certificate stays valid).

    \b
    Examples:
      unica revocation-request reject v3f2a9c1b7d04 --reason "not confirmed by the enterprise" --as "$MY_CARD"
    """
    from unica.ra import decide_revocation

    info = decide_revocation(_store(db), request_id, False, reason, auth=operator_auth())
    emit_json(info) if as_json else click.echo(f"revocation request {request_id} rejected")


COMMANDS = [enterprise_group, application_group, revocation_group]
