"""Running approved requests: the operation a quorum approved runs once, in the process of the
approval that met the quorum (see :mod:`unica.auth.approvals`).

Each operation that can be put under an approval rule registers an *executor* here: a
function ``(store, request, execution, key_secrets) -> dict`` that runs the operation again
from the request's stored parameters, with ``auth=execution``; the library call rebuilds the
operation, and :func:`unica.auth.approvals.executing_actor` refuses it unless its digest is the
approved one. ``key_secrets(uri) -> dict`` gives the PIN or passphrase of a CA key the
operation needs (the approving operator's environment).
"""

from __future__ import annotations

import base64
from typing import Callable

from unica.auth import approvals as _approvals
from unica.errors import UnicaError

Executor = Callable[..., dict]
EXECUTORS: dict[str, Executor] = {}


def executor(name: str):
    def deco(fn: Executor) -> Executor:
        EXECUTORS[name] = fn
        return fn
    return deco


def approve(store, request_id: str, auth, *, key_secrets=None, now=None) -> dict:
    """Approve request ``request_id`` with ``auth`` (the approver's card); if that meets the
    quorum, run the operation here and record its outcome. Returns the request as it ends."""
    decision = _approvals.decide(store, request_id, auth, "approve", now=now)
    execution = decision.execution
    if execution is None:
        return decision.request
    request = decision.request
    from unica.ca import keyapprovals  # noqa: F401 - registers the key.backup / key.restore executors

    run = EXECUTORS.get(request["operation"])
    if run is None:  # pragma: no cover - every rule operation has an executor (tests/auth checks)
        return _approvals.finish(store, execution, error=f"no executor for {request['operation']}")
    try:
        result = run(store, request, execution, key_secrets or (lambda uri: {}))
    except UnicaError as e:
        _approvals.finish(store, execution, error=f"{type(e).__name__}: {e}")
        raise
    except BaseException as e:
        _approvals.finish(store, execution, error=f"{type(e).__name__}: {e}")
        raise
    return _approvals.finish(store, execution, result=result)


def _p(request: dict) -> dict:
    return request["params"]


@executor("operator.add")
def _operator_add(store, request, execution, key_secrets) -> dict:
    from unica.auth.operators import add_operator

    p = _p(request)
    info = add_operator(store, p["name"], p["roles"], base64.b64decode(p["cert"]), office=p["office"], auth=execution)
    return {"operator": info["name"], "serial": info["serial"]}


@executor("operator.set")
def _operator_set(store, request, execution, key_secrets) -> dict:
    from unica.auth.operators import set_operator

    p = _p(request)
    info = set_operator(store, p["name"], roles=p["roles"], office=p["office"], auth=execution)
    return {"operator": info["name"], "roles": info["roles"], "office": info["office"]}


@executor("operator.disable")
def _operator_disable(store, request, execution, key_secrets) -> dict:
    from unica.auth.operators import disable_operator

    return {"operator": disable_operator(store, _p(request)["name"], auth=execution)["name"], "status": "disabled"}


@executor("office.set")
def _office_set(store, request, execution, key_secrets) -> dict:
    from unica.auth.operators import set_office

    p = _p(request)
    return set_office(store, p["name"], cas=p["cas"], profiles=p["profiles"], create=p["create"], auth=execution)


@executor("approval-rule.set")
def _rule_set(store, request, execution, key_secrets) -> dict:
    from unica.auth.operators import set_rule

    p = _p(request)
    return set_rule(store, p["operation"], p["approvals"], role=p["role"], auth=execution)


@executor("cert.issue")
def _cert_issue(store, request, execution, key_secrets) -> dict:
    from unica.ca.issuance import IssuingCA
    from unica.hsm import load_key

    p = _p(request)
    ca = IssuingCA(store, request["ca"])
    ca.set_key_loader(lambda: load_key(ca.key_uri, **key_secrets(ca.key_uri)))
    if "csr" in p:
        issued = ca.issue(base64.b64decode(p["csr"]), p["profile"], requester=p["requester"], lint=p["lint"],
                          auth=execution)
        return {"serial": issued.serial_hex, "ca": issued.ca, "profile": issued.profile}
    results = ca.issue_many([base64.b64decode(c) for c in p["csrs"]], p["profile"], requester=p["requester"],
                            lint=p["lint"], auth=execution)
    return {"serials": [r.serial_hex for r in results if not isinstance(r, Exception)],
            "refused": sum(isinstance(r, Exception) for r in results)}


# --- the CA side: ca.create, ca.set, ca.import-cert, ca.revoke, profile.change ------------------


@executor("ca.create")
def _ca_create(store, request, execution, key_secrets) -> dict:
    import dataclasses
    import os
    from pathlib import Path

    from unica.ca.authority import (ca_info, create_external_sub, create_root, create_sub, key_from_params,
                                    settings_from_params)
    from unica.hsm import load_key

    p, name = _p(request), request["ca"]
    key = key_from_params(p["key"])
    key = dataclasses.replace(key, **key_secrets(key.target_uri(name)))
    settings = settings_from_params(p["settings"])
    if p["kind"] == "root":
        info = create_root(store, name, p["subject"], key, validity=p["validity"], profile=p["profile"],
                           settings=settings, auth=execution)
    elif p["kind"] == "sub":
        parent_uri = ca_info(store, p["parent"])["key_uri"]
        parent_key = load_key(parent_uri, **key_secrets(parent_uri))
        info = create_sub(store, name, p["parent"], p["subject"], key, parent_key=parent_key,
                          validity=p["validity"], profile=p["profile"], settings=settings, auth=execution)
    else:  # external parent: the CSR is written where the request said, atomically, and kept in the result
        written = {}

        def write_csr(data: bytes) -> None:
            out = Path(p["csr_out"])
            tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, out)
            written["csr"] = data.decode("ascii")

        info = create_external_sub(store, name, p["subject"], key, Path(p["csr_out"]), settings=settings,
                                   write_csr=write_csr, auth=execution)
        return {"ca": info["name"], "status": info["status"], "csr_out": p["csr_out"], **written}
    return {"ca": info["name"], "status": info["status"], "key_uri": info["key_uri"]}


@executor("ca.set")
def _ca_set(store, request, execution, key_secrets) -> dict:
    from unica.ca.authority import set_ca, settings_from_params

    p = _p(request)
    key_uri = p.get("key_uri")
    info = set_ca(store, request["ca"], settings_from_params(p.get("settings", {})), key_uri=key_uri,
                  auth=execution, **(key_secrets(key_uri) if key_uri else {}))
    return {"ca": info["name"], **p.get("settings", {}), **({"key_uri": info["key_uri"]} if key_uri else {})}


@executor("ca.import-cert")
def _ca_import_cert(store, request, execution, key_secrets) -> dict:
    from unica.ca.authority import import_cert

    info = import_cert(store, request["ca"], base64.b64decode(_p(request)["cert"]), auth=execution)
    return {"ca": info["name"], "status": info["status"]}


@executor("ca.revoke")
def _ca_revoke(store, request, execution, key_secrets) -> dict:
    import datetime as dt

    from unica.ca.authority import revoke_ca

    p = _p(request)
    when = dt.datetime.fromisoformat(p["invalidity_date"]) if p.get("invalidity_date") else None
    info = revoke_ca(store, request["ca"], p["reason"], invalidity_date=when, auth=execution)
    return {"ca": info["name"], "status": info["status"], "serial": info["revocation"]["serial"],
            "parent": info["revocation"]["ca"]}


@executor("profile.change")
def _profile_change(store, request, execution, key_secrets) -> dict:
    from unica.ca.profiles import apply_change

    return apply_change(store, _p(request), auth=execution)
