"""The time source checks: chrony's tracking report parsed (leap status, system time offset against
the declared accuracy), the status file's forms, and ``unica tsa serve --clock-check CMD`` with a
command that prints a tracking report the test switches (the real clock is never touched)."""

from __future__ import annotations

import shlex
import sys

import pytest

from tests.tsa.conftest import Server, wait_for
from tests.tsa.test_responses import ask, query, rejected, tst_info
from unica.tsa.clock import ClockMonitor, ClockReading, ClockState, StatusFileCheck, parse_tracking

TRACKING = """Reference ID    : C0A80001 (ntp.example.cn)
Stratum         : 3
Ref time (UTC)  : Sun Nov 29 23:00:00 2026
System time     : {offset} seconds {way} of NTP time
Last offset     : +0.000012345 seconds
RMS offset      : 0.000020000 seconds
Frequency       : 1.234 ppm slow
Residual freq   : +0.001 ppm
Skew            : 0.010 ppm
Root delay      : 0.001234 seconds
Root dispersion : 0.000456 seconds
Update interval : 64.2 seconds
Leap status     : {leap}
"""


@pytest.mark.parametrize("offset, way, leap, synced", [
    ("0.000001234", "fast", "Normal", True),
    ("0.900000000", "slow", "Normal", True),
    ("1.500000000", "slow", "Normal", False),
    ("0.000001234", "fast", "Not synchronised", False),
])
def test_parse_chrony_tracking(offset, way, leap, synced):
    r = parse_tracking(TRACKING.format(offset=offset, way=way, leap=leap), accuracy_s=1.0)
    assert r.synced is synced, r
    if leap == "Normal":
        assert r.offset == pytest.approx(float(offset) * (1 if way == "fast" else -1))


def test_parse_garbage_is_out_of_sync():
    assert not parse_tracking("", 1.0).synced
    assert not parse_tracking("506 Cannot talk to daemon\n", 1.0).synced


@pytest.mark.parametrize("text, synced", [("synced", True), ("synced offset=0.2\n", True),
                                          ("SYNCED offset=-0.9", True), ("synced offset=1.2", False),
                                          ("unsynced offset=0.0", False), ("", False), ("maybe", False)])
def test_status_file_forms(tmp_path, text, synced):
    f = tmp_path / "s"
    f.write_text(text)
    assert StatusFileCheck(f, 1.0)().synced is synced
    assert not StatusFileCheck(tmp_path / "missing", 1.0)().synced


def test_monitor_stops_issuance_before_recording_a_loss_and_records_a_recovery_before_resuming():
    answers = iter([True, False, False, True])
    state = ClockState(True)
    seen = []  # (event, state while the event is recorded)
    monitor = ClockMonitor(lambda: ClockReading(next(answers), 0.0, "x"), state,
                           on_change=lambda r: seen.append((r.synced, state.synced)))
    for _ in range(4):
        monitor.poll()
    assert seen == [(False, False), (True, False)]
    assert state.synced


def test_serve_with_a_clock_command(tsa_home, tmp_path):
    report = tmp_path / "tracking.txt"
    report.write_text(TRACKING.format(offset="0.000100000", way="fast", leap="Normal"))
    cmd = f"{shlex.quote(sys.executable)} -c {shlex.quote(f'print(open({str(report)!r}).read())')}"
    with Server(tsa_home, "--unit", "tsa1", "--clock-check", cmd, "--clock-interval", "0.1") as s:
        tst_info(ask(s, query(b"chrony")))
        report.write_text(TRACKING.format(offset="0.000100000", way="fast", leap="Not synchronised"))
        assert wait_for(lambda: ask(s, query(b"c"))["status"]["status"].native == "rejection", timeout=10)
        rejected(ask(s, query(b"c")), "time_not_available")
        report.write_text(TRACKING.format(offset="0.000100000", way="slow", leap="Normal"))
        assert wait_for(lambda: ask(s, query(b"c"))["status"]["status"].native == "granted", timeout=10)
