"""``unica init`` over a database that has operators is an admin's act (operation ``home.init``):
the library's check, :func:`unica.ca.home.init_authorized` (the CLI wraps ``unica init`` in it)."""

from __future__ import annotations

import json

import pytest


def test_init_over_a_database_with_operators_needs_an_admin(tmp_path, monkeypatch):
    from tests.auth.conftest import bootstrap, build_joint_ca
    from tests.conftest import TEST_PIN
    from unica.auth import OperatorSigner
    from unica.ca.home import init_authorized
    from unica.errors import NotAuthorized
    from unica.store import open_store

    # a new database and one from before operators: nothing to check
    with init_authorized(f"sqlite:///{tmp_path / 'new.db'}") as actor:
        assert actor is None
    assert not (tmp_path / "new.db").exists()

    j = bootstrap(build_joint_ca(tmp_path / "joint", cards=("alice", "bob"), own_tokens=False))
    for k, v in j.env.items():
        if v is None:
            monkeypatch.delenv(k, raising=False)
        else:
            monkeypatch.setenv(k, v)
    url = j.db_url()
    before = j.sql("SELECT count(*) FROM audit_log WHERE event = 'home.initialised'")[0][0]
    with pytest.raises(NotAuthorized, match="authenticated operator"):
        with init_authorized(url):
            pytest.fail("ran without an operator")
    with pytest.raises(NotAuthorized, match="bob may not home.init"):
        with init_authorized(url, OperatorSigner(j.card("bob"), pin=TEST_PIN)):
            pytest.fail("ran for an ra-officer")
    refused = [json.loads(d) if isinstance(d, str) else d for (d,) in j.sql(
        "SELECT details FROM audit_log WHERE event = 'auth.refused' ORDER BY id DESC LIMIT 2")]
    assert {d["operation"] for d in refused} == {"home.init"}

    store = open_store(url)
    try:
        with init_authorized(url, OperatorSigner(j.card("alice"), pin=TEST_PIN)) as actor:
            assert actor.name == "alice"
            with store.write() as s:  # what unica init records: under alice's name
                store.audit(s, "home.initialised", details={"home": str(j.home)})
    finally:
        store.dispose()
    (actor_col, details), = j.sql("SELECT actor, details FROM audit_log WHERE event = 'home.initialised' "
                                  "ORDER BY id DESC LIMIT 1")
    details = json.loads(details) if isinstance(details, str) else details
    assert actor_col.startswith("alice (operator ") and details["operator"]["name"] == "alice"
    assert j.sql("SELECT count(*) FROM audit_log WHERE event = 'home.initialised'")[0][0] == before + 1
