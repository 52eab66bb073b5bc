"""A batch issuance overtaken by recovery: no certificate handed out that the database lost.

``issue_many`` records the intents of a whole batch, then signs them one by one (a big
re-issuance on a slow token can take longer than recovery's grace period), then stores
them. If recovery on another node rolls the intents back meanwhile (here: ``recover`` with
no grace, run from inside the first signature), the certificates it signed must not be
returned as issued: the database says ``failed`` and holds no DER for them.
"""

from __future__ import annotations

import datetime as dt

from tests.reliability import rel


def test_batch_whose_intents_were_rolled_back_returns_errors_not_certificates(tmp_path):
    from unica.ca.issuance import Issued, IssuingCA
    from unica.ca.recovery import recover
    from unica.errors import StoreError
    from unica.store import models as m
    from unica.store import open_store

    home = tmp_path / "home"
    url = f"sqlite:///{home / 'unica.db'}"
    rel.make_pki(url, home)
    store = open_store(url)
    key = rel.load_ca_key(store, rel.SUB)
    rolled_back = []

    def another_node_recovers():
        if not rolled_back:
            rolled_back.extend(recover(store, older_than=dt.timedelta(0), crl_dir=tmp_path / "crl").abandoned)

    ca = IssuingCA(store, rel.SUB, key=rel.HookedKey(key, another_node_recovers))
    out = ca.issue_many([rel.leaf_request(f"b{i}") for i in range(5)], "tls-server", requester="batch", lint=False)
    assert len(rolled_back) == 5
    with store.read() as s:
        rows = {r.serial: r for r in s.query(m.Certificate).filter_by(requester="batch").all()}
    assert {r.status for r in rows.values()} == {"failed"}
    for r in out:
        assert not isinstance(r, Issued) or (rows[r.serial_hex].status == "valid" and rows[r.serial_hex].der == r.der), \
            f"certificate {r.serial_hex} handed out, but the database says {rows[r.serial_hex].status}"
        assert isinstance(r, StoreError), r
    # the next batch, with no recovery in the way, is issued and stored
    ok = IssuingCA(store, rel.SUB, key=key).issue_many([rel.leaf_request("c")], "tls-server", lint=False)
    assert isinstance(ok[0], Issued)
    rel.check_consistency(store)
    store.dispose()
