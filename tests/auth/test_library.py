"""The library's own check (unica.auth), called directly: signatures, freshness, replay, scope.

The CLI's signer is in the same process as the check, so these are the cases a remote caller
(the service, a Proof made elsewhere) could present: a proof for another request, one made
too long ago, one replayed, one signed by a key that is not the operator's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os

import pytest

from unica.auth import Operation, OperatorSigner, Proof, authorize
from unica.auth.approvals import decide
from unica.errors import ApprovalPending, NotAuthorized
from unica.store import open_store


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """One joint CA for this module's tests (built in the run's token directory: the cards are
    used in this process, where the PKCS#11 module is initialised once). The tests that add a
    rule come after those that need none."""
    from tests.auth.conftest import bootstrap, build_joint_ca

    joint = bootstrap(build_joint_ca(tmp_path_factory.mktemp("lib"), cards=("alice", "bob", "carol"),
                                     own_tokens=False))
    with pytest.MonkeyPatch.context() as mp:
        for k, v in joint.env.items():
            if v is None:
                mp.delenv(k, raising=False)
            else:
                mp.setenv(k, v)
        store = open_store(joint.db_url())
        yield joint, store
        store.dispose()


def _carol_and_a_rule(j) -> None:
    """carol an officer of customs, and enterprise-sign issuance under a 2-approval rule (once)."""
    if not j.sql("SELECT 1 FROM operators WHERE name='carol'"):
        j.ok("operator", "add", "carol", "--role", "ra-officer", "--office", "customs", "--cert",
             str(j.certs["carol"]), who="alice")
    if not j.sql("SELECT 1 FROM approval_rules"):
        j.ok("approval-rule", "set", "cert.issue:enterprise-sign", "--approvals", "2", who="alice")


def _op(name="cert.issue", **params):
    return Operation(name, ca="root", params={"profile": "enterprise-sign", "csr": "AA==", **params})


def test_a_proof_for_another_request_is_refused(lib):
    j, store = lib
    bob = OperatorSigner(j.card("bob"))
    proof = bob.prove("request", _op(requester="one").digest())
    with pytest.raises(NotAuthorized, match="another request"):
        authorize(store, _op(requester="two"), proof)


def test_replayed_and_stale_proofs_are_refused(lib):
    j, store = lib
    bob = OperatorSigner(j.card("bob"))
    op = _op()
    proof = bob.prove("request", op.digest())
    assert authorize(store, op, proof).name == "bob"
    with pytest.raises(NotAuthorized, match="replay"):
        authorize(store, op, proof)
    old = bob.prove("request", op.digest(), now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=30))
    with pytest.raises(NotAuthorized, match="not fresh"):
        authorize(store, op, old)


def test_a_tls_client_certificate_authenticates_its_operator(lib):
    """The service's path: the operator whose stored certificate is the TLS client certificate,
    checked for role and office like a card signature; any other certificate is nobody."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from unica.auth import TLSClient

    j, store = lib
    der = {n: x509.load_pem_x509_certificate(j.certs[n].read_bytes()).public_bytes(Encoding.DER) for n in ("alice", "bob", "carol")}
    assert authorize(store, Operation("application.create", ca="root"), TLSClient(der["bob"])).name == "bob"
    assert authorize(store, _op(), TLSClient(der["bob"])).office == "customs"
    with pytest.raises(NotAuthorized, match="may not application.create"):
        authorize(store, Operation("application.create", ca="root"), TLSClient(der["alice"]))
    with pytest.raises(NotAuthorized, match="not an operator's"):  # carol has a card but is no operator here
        authorize(store, Operation("enterprise.add"), TLSClient(der["carol"]))
    with pytest.raises(NotAuthorized, match="not an operator's"):
        authorize(store, Operation("enterprise.add"), TLSClient(b"\x30\x03\x02\x01\x01"))


def test_a_signature_by_another_key_is_refused(lib):
    j, store = lib
    bob, carol = OperatorSigner(j.card("bob")), OperatorSigner(j.card("carol"))
    op = _op()
    forged = dataclasses.replace(carol.prove("request", op.digest()), spki_sha256=bob.spki_sha256())
    with pytest.raises(NotAuthorized, match="does not verify"):
        authorize(store, op, forged)
    flipped = bob.prove("request", op.digest())
    flipped = dataclasses.replace(flipped, signature=flipped.signature[:-1] + bytes([flipped.signature[-1] ^ 1]))
    with pytest.raises(NotAuthorized):
        authorize(store, op, flipped)


def test_an_approval_signed_for_another_request_is_refused(lib):
    j, store = lib
    _carol_and_a_rule(j)
    bob, carol = OperatorSigner(j.card("bob")), OperatorSigner(j.card("carol"))
    ids = []
    for n in ("a", "b"):
        with pytest.raises(ApprovalPending) as e:
            authorize(store, _op(requester=n), bob)
        ids.append(e.value.request_id)
    from sqlalchemy import select

    from unica.store import models as m

    with store.read() as s:
        digest_b = s.get(m.ApprovalRequest, ids[1]).digest
    # carol's approval of request b, presented for request a
    proof_b = carol.prove(f"approve:{ids[1]}", digest_b)
    with pytest.raises(NotAuthorized, match="another request"):
        decide(store, ids[0], proof_b, "approve")
    with store.read() as s:
        assert s.get(m.ApprovalRequest, ids[0]).status == "pending"
        assert not s.scalars(select(m.Approval).where(m.Approval.request_id == ids[0],
                                                      m.Approval.decision == "approve")).all()


def test_no_operator_no_check(tmp_path, monkeypatch):
    """Before the first operator, the library runs as it always has (the OS user acts)."""
    monkeypatch.setenv("UNICA_HOME", str(tmp_path / "h"))
    store = open_store(create=True)
    actor = authorize(store, _op(), None)
    assert not actor.is_operator and actor.audit_actor is None
    assert authorize(store, Operation("operator.add"), None).bootstrap
    store.dispose()


def test_an_approval_signed_by_another_key_is_refused(lib):
    """An approval that claims carol's card but was signed by bob's key (same request, same digest)."""
    j, store = lib
    _carol_and_a_rule(j)
    bob, carol = OperatorSigner(j.card("bob")), OperatorSigner(j.card("carol"))
    with pytest.raises(ApprovalPending) as e:
        authorize(store, _op(requester="forged"), bob)
    rid = e.value.request_id
    from unica.store import models as m

    with store.read() as s:
        digest = s.get(m.ApprovalRequest, rid).digest
    forged = dataclasses.replace(bob.prove(f"approve:{rid}", digest), spki_sha256=carol.spki_sha256())
    with pytest.raises(NotAuthorized, match="does not verify"):
        decide(store, rid, forged, "approve")
    with store.read() as s:
        assert s.get(m.ApprovalRequest, rid).status == "pending"
