"""The TSA on PostgreSQL: migration 0008 applied by 'unica init', a unit with a file key, tokens from
the in-process Responder (as helper code and the long-term signing tests use it) archived through
SQLAlchemy's insert, found by 'unica tsa show', and the unit disabled."""

from __future__ import annotations

import hashlib
import json

from asn1crypto import tsp

from tests.auth.conftest import fresh_pg_database
from tests.conftest import run_unica
from tests.tsa.conftest import PASSPHRASE, POLICY


def test_units_tokens_and_archive_on_postgresql(pg_url, tmp_path, monkeypatch):
    url = fresh_pg_database(pg_url)
    env = {"UNICA_HOME": str(tmp_path / "home"), "UNICA_DB": url, "UNICA_PASSPHRASE": PASSPHRASE}

    def ok(*args):
        p = run_unica(*args, env=env)
        assert p.returncode == 0, p.stdout + p.stderr
        return p

    ok("init")
    ok("ca", "create-root", "pgroot", "--subject", "C=CN,O=PG,CN=PG Root", "--key-type", "ec-p256")
    ok("tsa", "unit", "add", "pgtsa", "--ca", "pgroot", "--policy", POLICY)
    monkeypatch.setenv("UNICA_PASSPHRASE", PASSPHRASE)
    from unica.store import open_store
    from unica.tsa import Responder

    store = open_store(url)
    serials = []
    try:
        with Responder(store, "pgtsa") as r:
            for i in range(300):
                q = tsp.TimeStampReq({"version": "v1", "message_imprint": {
                    "hash_algorithm": {"algorithm": "sha256"}, "hashed_message": hashlib.sha256(b"%d" % i).digest()},
                    "nonce": i + 1}).dump()
                der = r.respond(q)
                assert der[4:9] == b"\x30\x03\x02\x01\x00"
                tst = tsp.TimeStampResp.load(der)["time_stamp_token"]["content"]["encap_content_info"]["content"]
                serials.append(tst.parsed["serial_number"].native)
    finally:
        store.dispose()
    shown = json.loads(ok("tsa", "show", format(serials[123], "x"), "--json").stdout)
    assert shown["unit"] == "pgtsa" and shown["imprint"] == hashlib.sha256(b"123").hexdigest() and shown["nonce"]
    ok("tsa", "unit", "disable", "pgtsa")
    p = run_unica("tsa", "serve", "--port", "0", "--unit", "pgtsa", env=env)
    assert p.returncode == 3 and "disabled" in p.stderr
