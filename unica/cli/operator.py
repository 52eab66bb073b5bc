"""``unica operator``, ``office``, ``approval-rule`` and ``approval``: joint operation.

Operators act with their own card: ``--as KEY_URI`` (or ``UNICA_OPERATOR``) on any
state-changing command names the key on the card, which signs the request; the card's PIN
comes from the URI's ``pin-source``, else ``UNICA_PIN``, else a prompt.
"""

from __future__ import annotations

import click

from unica.cli.acting import as_option, operator_auth
from unica.cli.ca import _store, db_option
from unica.cli.common import (emit_json, json_option, key_secrets, passphrase_file_option, pin_file_option,
                              show_fields, table)
from unica.cli.completion import complete_ca, complete_profile

ROLE_CHOICE = click.Choice(["admin", "ra-officer", "auditor", "custodian"])
REQUEST_STATES = ("pending", "executing", "executed", "failed", "rejected", "expired")


# --- operators --------------------------------------------------------------------------------


@click.group("operator")
def operator_group() -> None:
    """Operators: people with a certificate on their own card, their roles and RA office."""


def _show_operator(info: dict, as_json: bool) -> None:
    if as_json:
        emit_json(info)
    else:
        show_fields({k: v for k, v in info.items() if k != "spki_sha256"} | {"key sha256": info.get("spki_sha256")})


@operator_group.command("add")
@click.argument("name")
@click.option("--role", "roles", multiple=True, type=ROLE_CHOICE, required=True,
              help="A role (repeat for several): admin, ra-officer, auditor, custodian.")
@click.option("--office", default=None, metavar="NAME", help="The RA office (required for an ra-officer).")
@click.option("--cert", "cert_file", required=True, type=click.Path(dir_okay=False),
              help="The operator's certificate (issued by unica under the 'operator' profile), PEM or DER.")
@as_option
@db_option
@json_option
def operator_add(name, roles, office, cert_file, db, as_json) -> None:
    """Add an operator. On an empty operator table this bootstraps the first admin (audited as such).

    \b
    Examples:
      unica operator add alice --role admin --cert alice.pem
      unica operator add bob --role ra-officer --office customs-sh --cert bob.pem \\
          --as 'pkcs11:token=alice;object=operator'
    """
    from unica.auth.operators import add_operator
    from unica.boundedio import MAX_CERTIFICATE, read_limited

    data = read_limited(cert_file, MAX_CERTIFICATE, "--cert")
    info = add_operator(_store(db), name, roles, data, office=office, auth=operator_auth())
    if as_json:
        emit_json(info)
    else:
        click.echo(f"operator {info['name']} added: {', '.join(info['roles'])}"
                   + (f" in office {info['office']}" if info.get("office") else "") + f" (serial {info['serial']})")


@operator_group.command("set")
@click.argument("name")
@click.option("--role", "roles", multiple=True, type=ROLE_CHOICE, help="The operator's roles (replaces them).")
@click.option("--office", default=None, metavar="NAME", help="The operator's RA office.")
@as_option
@db_option
@json_option
def operator_set(name, roles, office, db, as_json) -> None:
    """Change an operator's roles or RA office (nobody changes their own).

    \b
    Examples:
      unica operator set bob --role ra-officer --role custodian --as "$ADMIN_CARD"
      unica operator set bob --office customs-gz --as "$ADMIN_CARD"
    """
    from unica.auth.operators import set_operator
    from unica.errors import InputError

    if not roles and office is None:
        raise InputError("give --role or --office")
    _show_operator(set_operator(_store(db), name, roles=roles or None, office=office, auth=operator_auth()), as_json)


@operator_group.command("disable")
@click.argument("name")
@as_option
@db_option
@json_option
def operator_disable(name, db, as_json) -> None:
    """Disable an operator: their card no longer acts. The last admin cannot be disabled.

    \b
    Examples:
      unica operator disable bob --as 'pkcs11:token=alice;object=operator'
    """
    from unica.auth.operators import disable_operator

    info = disable_operator(_store(db), name, auth=operator_auth())
    if as_json:
        emit_json(info)
    else:
        click.echo(f"operator {name} disabled")


@operator_group.command("list")
@db_option
@json_option
def operator_list(db, as_json) -> None:
    """List the operators, their roles, office and whether their certificate gives authority now.

    \b
    Examples:
      unica operator list
      unica operator list --json | jq -r '.[] | select(.roles | index("admin")) | .name'
    """
    from unica.auth.operators import list_operators

    rows = list_operators(_store(db))
    if as_json:
        emit_json(rows)
        return
    table([[r["name"], ",".join(r["roles"]), r.get("office"), r["status"], r["certificate"], r["serial"],
            r["subject"]] for r in rows], ["NAME", "ROLES", "OFFICE", "STATUS", "CERTIFICATE", "SERIAL", "SUBJECT"])


@operator_group.command("show")
@click.argument("name")
@db_option
@json_option
def operator_show(name, db, as_json) -> None:
    """Show one operator.

    \b
    Examples:
      unica operator show alice
      unica operator show alice --json
    """
    from unica.auth.operators import show_operator

    _show_operator(show_operator(_store(db), name), as_json)


# --- offices ----------------------------------------------------------------------------------


@click.group("office")
def office_group() -> None:
    """RA offices: which CAs and profiles each office's officers may use."""


def _show_office(info: dict, as_json: bool) -> None:
    emit_json(info) if as_json else show_fields(info)


@office_group.command("add")
@click.argument("name")
@click.option("--ca", "cas", multiple=True, required=True, shell_complete=complete_ca, metavar="NAME",
              help="A CA the office may use (repeat for several).")
@click.option("--profile", "profiles", multiple=True, required=True, shell_complete=complete_profile, metavar="NAME",
              help="A profile the office may issue (repeat for several).")
@as_option
@db_option
@json_option
def office_add(name, cas, profiles, db, as_json) -> None:
    """Add an RA office (an agency, or a regional branch).

    \b
    Examples:
      unica office add customs-sh --ca issuing --profile enterprise-sign --profile enterprise-auth \\
          --as 'pkcs11:token=alice;object=operator'
    """
    from unica.auth.operators import set_office

    _show_office(set_office(_store(db), name, cas=cas, profiles=profiles, create=True, auth=operator_auth()), as_json)


@office_group.command("set")
@click.argument("name")
@click.option("--ca", "cas", multiple=True, shell_complete=complete_ca, metavar="NAME",
              help="The office's CAs (replaces them).")
@click.option("--profile", "profiles", multiple=True, shell_complete=complete_profile, metavar="NAME",
              help="The office's profiles (replaces them).")
@as_option
@db_option
@json_option
def office_set(name, cas, profiles, db, as_json) -> None:
    """Change what an RA office may use.

    \b
    Examples:
      unica office set customs-sh --profile enterprise-sign --as "$ADMIN_CARD"
    """
    from unica.auth.operators import set_office
    from unica.errors import InputError

    if not cas and not profiles:
        raise InputError("give --ca or --profile")
    _show_office(set_office(_store(db), name, cas=cas or None, profiles=profiles or None, auth=operator_auth()),
                 as_json)


@office_group.command("list")
@db_option
@json_option
def office_list(db, as_json) -> None:
    """List the RA offices.

    \b
    Examples:
      unica office list
    """
    from unica.auth.operators import list_offices

    rows = list_offices(_store(db))
    if as_json:
        emit_json(rows)
        return
    table([[r["name"], ",".join(r["cas"]), ",".join(r["profiles"]), ",".join(r["officers"])] for r in rows],
          ["NAME", "CAS", "PROFILES", "OFFICERS"])


@office_group.command("show")
@click.argument("name")
@db_option
@json_option
def office_show(name, db, as_json) -> None:
    """Show one RA office and its officers.

    \b
    Examples:
      unica office show customs-sh
    """
    from unica.auth.operators import show_office

    _show_office(show_office(_store(db), name), as_json)


# --- approval rules ---------------------------------------------------------------------------


@click.group("approval-rule")
def rule_group() -> None:
    """Dual control: which operations wait for M distinct operators."""


@rule_group.command("set")
@click.argument("operation")
@click.option("--approvals", type=click.IntRange(1, 16), required=True, metavar="M",
              help="Distinct operators needed, the requester included (1: no dual control).")
@click.option("--role", type=ROLE_CHOICE, default=None, help="Only operators with this role count.")
@as_option
@db_option
@json_option
def rule_set(operation, approvals, role, db, as_json) -> None:
    """Put OPERATION under M-of-N control: ca.create, ca.revoke, ca.set, profile.change, operator.add,
    operator.disable, key.backup, key.restore, office.set, approval-rule.set, cert.issue or
    cert.issue:PROFILE. Once any rule exists, changing rules is itself under dual control.

    \b
    Examples:
      unica approval-rule set ca.create --approvals 2 --role admin --as "$ADMIN_CARD"
      unica approval-rule set cert.issue:agency-sign --approvals 2 --as "$ADMIN_CARD"
    """
    from unica.auth.operators import set_rule

    info = set_rule(_store(db), operation, approvals, role=role, auth=operator_auth())
    if as_json:
        emit_json(info)
    else:
        click.echo(f"{operation}: {approvals} approval(s)" + (f" by role {role}" if role else "")
                   if approvals > 1 else f"{operation}: no dual control")


@rule_group.command("list")
@db_option
@json_option
def rule_list(db, as_json) -> None:
    """List the approval rules.

    \b
    Examples:
      unica approval-rule list
    """
    from unica.auth.operators import list_rules

    rows = list_rules(_store(db))
    if as_json:
        emit_json(rows)
        return
    table([[r["operation"], r["approvals"], r["role"]] for r in rows], ["OPERATION", "APPROVALS", "ROLE"])


# --- requests ---------------------------------------------------------------------------------


@click.group("approval")
def approval_group() -> None:
    """Requests under dual control: list, show, approve, reject."""


@approval_group.command("list")
@click.option("--status", default=None, metavar="STATUS",
              help="Only requests in this state: " + ", ".join(REQUEST_STATES) + ".")
@db_option
@json_option
def approval_list(status, db, as_json) -> None:
    """List requests under dual control.

    \b
    Examples:
      unica approval list --status pending
    """
    from unica.auth.approvals import list_requests
    from unica.errors import InputError

    if status is not None and status not in REQUEST_STATES:
        raise InputError(f"bad --status {status!r}: one of {', '.join(REQUEST_STATES)}")
    rows = list_requests(_store(db), status=status)
    if as_json:
        emit_json(rows)
        return
    table([[r["id"], r["operation"], r["ca"], r["status"], r["approvals"], r["decisions"][0]["operator"],
            r["expires_at"].strftime("%Y-%m-%d %H:%M")] for r in rows],
          ["ID", "OPERATION", "CA", "STATUS", "APPROVALS", "REQUESTER", "EXPIRES"])


@approval_group.command("show")
@click.argument("request_id", metavar="ID")
@db_option
@json_option
def approval_show(request_id, db, as_json) -> None:
    """Show a request: exactly what was asked, its digest, and who decided what.

    \b
    Examples:
      unica approval show r3f2a9c1b7d04
    """
    from unica.auth.approvals import show_request

    info = show_request(_store(db), request_id)
    if as_json:
        emit_json(info)
        return
    import json

    decisions = info.pop("decisions")
    params = info.pop("params")
    show_fields(info | {"result": json.dumps(info["result"], ensure_ascii=False) if info.get("result") else None})
    click.echo("params:")
    for k, v in params.items():
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        click.echo(f"  {k}: {text if len(text) <= 120 else text[:117] + '...'}")
    click.echo("decisions:")
    for d in decisions:
        click.echo(f"  {d['at']:%Y-%m-%d %H:%M:%S}Z  {d['decision']:<8} {d['operator']} (serial {d['serial']})"
                   + (f": {d['reason']}" if d.get("reason") else ""))


@approval_group.command("approve")
@click.argument("request_id", metavar="ID")
@as_option
@pin_file_option
@passphrase_file_option
@db_option
@json_option
def approval_approve(request_id, pin_file, passphrase_file, db, as_json) -> None:
    """Approve a request with your card. The approval that meets the quorum runs the operation,
    here, once (the CA key's PIN is then needed: --pin-file, UNICA_PIN or a prompt).

    \b
    Examples:
      unica approval approve r3f2a9c1b7d04 --as 'pkcs11:token=carol;object=operator'
    """
    from unica.ca.approvals import approve

    store = _store(db)
    outcome = approve(store, request_id, operator_auth(),
                      key_secrets=lambda uri: key_secrets(uri, pin_file, passphrase_file))
    if as_json:
        emit_json(outcome)
    elif outcome["status"] == "executed":
        click.echo(f"request {request_id} approved ({outcome['approvals']}): {outcome['operation']} executed")
    else:
        click.echo(f"request {request_id} approved: {outcome['approvals']} approvals, {outcome['status']}")


@approval_group.command("reject")
@click.argument("request_id", metavar="ID")
@click.option("--reason", required=True, metavar="TEXT", help="Why (recorded in the audit log).")
@as_option
@db_option
@json_option
def approval_reject(request_id, reason, db, as_json) -> None:
    """Reject a request with your card: it will not run.

    \b
    Examples:
      unica approval reject r3f2a9c1b7d04 --reason "wrong profile" --as "$MY_CARD"
    """
    from unica.auth.approvals import decide

    d = decide(_store(db), request_id, operator_auth(), "reject", reason=reason)
    emit_json(d.request) if as_json else click.echo(f"request {request_id} rejected")


COMMANDS = [operator_group, office_group, rule_group, approval_group]
