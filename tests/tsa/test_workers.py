"""``--workers 2``: both forked workers issue tokens, archive them, and share one clock check --
out of sync, every worker answers timeNotAvailable, and the loss and the recovery are audited once
each for the server, not per worker or per request."""

from __future__ import annotations

import time

from tests.tsa.conftest import Server, wait_for
from tests.tsa.test_responses import ask, query, rejected, tst_info


def test_two_workers_share_the_clock_check(tsa_home, tmp_path):
    clock = tmp_path / "clock"
    clock.write_text("synced offset=0.01\n")
    events = lambda: [r[0] for r in tsa_home.sql(  # noqa: E731
        "SELECT event FROM audit_log WHERE event LIKE 'tsa.clock-%' ORDER BY id")]
    before = len(events())
    tokens_before = tsa_home.counts()["tsa_tokens"]
    with Server(tsa_home, "--unit", "tsa1", "--workers", "2", "--clock-status", str(clock),
                "--clock-interval", "0.1") as s:
        serials = {tst_info(ask(s, query(b"%d" % i)))["serial_number"].native for i in range(20)}
        assert len(serials) == 20
        clock.write_text("unsynced\n")
        time.sleep(0.6)
        for i in range(20):  # new connections: the kernel spreads them over both workers
            rejected(ask(s, query(b"late %d" % i)), "time_not_available")
        clock.write_text("synced offset=0.02\n")
        assert wait_for(lambda: ask(s, query(b"again"))["status"]["status"].native == "granted", timeout=10)
    # the workers wrote what was pending when they stopped (SIGTERM)
    assert tsa_home.counts()["tsa_tokens"] - tokens_before >= 21
    assert events()[before:] == ["tsa.clock-lost", "tsa.clock-recovered"]
