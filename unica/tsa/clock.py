"""The time source check: is the system clock synchronised within the declared accuracy?

EN 319 421: time-stamps shall not be issued while the clock is outside its stated accuracy.
A :class:`ClockMonitor` runs one check every ``interval`` seconds and keeps the answer in a
:class:`ClockState` -- one byte of memory shared with forked worker processes, so the check
(and the audit of a loss or a recovery) happens once per server, not per worker or request.

Two checks:

- :class:`StatusFileCheck`: a file an operator's tooling (or a test) writes, first word
  ``synced`` or ``unsynced``, optionally ``offset=SECONDS``; a missing or unreadable file, or
  an offset larger than the accuracy, is out of sync (fail closed).
- :class:`CommandCheck`: a command such as ``chronyc tracking``, its output parsed: ``Leap
  status : Normal`` and ``System time : X seconds fast/slow of NTP time`` within the accuracy.
"""

from __future__ import annotations

import logging
import mmap
import re
import shlex
import subprocess
import threading
from dataclasses import dataclass

log = logging.getLogger("unica.tsa.clock")

__all__ = ["ClockReading", "ClockState", "StatusFileCheck", "CommandCheck", "ClockMonitor"]

_MAX_STATUS = 4096


@dataclass(frozen=True)
class ClockReading:
    synced: bool
    offset: float | None
    detail: str


class ClockState:
    """Whether tokens may be issued now: one byte in shared memory (survives a fork)."""

    def __init__(self, synced: bool = True):
        self._m = mmap.mmap(-1, 1)
        self.set(synced)

    @property
    def synced(self) -> bool:
        return self._m[0] == 1

    def set(self, synced: bool) -> None:
        self._m[0] = 1 if synced else 0


class StatusFileCheck:
    def __init__(self, path, accuracy_s: float):
        self.path = str(path)
        self.accuracy_s = accuracy_s

    def __call__(self) -> ClockReading:
        try:
            with open(self.path, "rb") as f:
                text = f.read(_MAX_STATUS).decode("utf-8", "replace")
        except OSError as e:
            return ClockReading(False, None, f"cannot read the clock status file {self.path}: {e.strerror or e}")
        words = text.split()
        if not words or words[0].lower() not in ("synced", "unsynced"):
            return ClockReading(False, None, f"the clock status file {self.path} says neither synced nor unsynced")
        offset = None
        mt = re.search(r"offset=([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)", text)
        if mt:
            offset = float(mt.group(1))
        if words[0].lower() == "unsynced":
            return ClockReading(False, offset, "the clock status file says unsynced")
        if offset is not None and abs(offset) > self.accuracy_s:
            return ClockReading(False, offset, f"clock offset {offset:+.6f} s exceeds the accuracy {self.accuracy_s:g} s")
        return ClockReading(True, offset, "synced")


class CommandCheck:
    """``chronyc tracking`` (or a command printing the same fields)."""

    def __init__(self, command: str, accuracy_s: float, timeout: float = 5.0):
        self.argv = shlex.split(command)
        if not self.argv:
            raise ValueError("an empty clock check command")
        self.accuracy_s = accuracy_s
        self.timeout = timeout

    def __call__(self) -> ClockReading:
        import threading

        try:  # the output read bounded (64 KiB), the command killed after the timeout
            proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as e:
            return ClockReading(False, None, f"clock check {self.argv[0]} failed: {e}")
        timer = threading.Timer(self.timeout, proc.kill)
        timer.start()
        try:
            out = proc.stdout.read(_MAX_OUTPUT)
            if len(out) >= _MAX_OUTPUT and proc.poll() is None:  # more than a tracking report: not one
                proc.kill()
            code = proc.wait()
        finally:
            timer.cancel()
            proc.stdout.close()
        if code != 0:
            return ClockReading(False, None, f"clock check {self.argv[0]} exited {code}")
        return parse_tracking(out.decode("utf-8", "replace"), self.accuracy_s)


_MAX_OUTPUT = 65536


def parse_tracking(text: str, accuracy_s: float) -> ClockReading:
    leap = re.search(r"^Leap status\s*:\s*(.+?)\s*$", text, re.M)
    if leap is None:
        return ClockReading(False, None, "no 'Leap status' in the clock check output")
    if leap.group(1).lower() not in ("normal", "insert second", "delete second"):
        return ClockReading(False, None, f"leap status: {leap.group(1)}")
    st = re.search(r"^System time\s*:\s*([0-9.eE+-]+)\s+seconds\s+(fast|slow)", text, re.M)
    if st is None:
        return ClockReading(False, None, "no 'System time' offset in the clock check output")
    offset = float(st.group(1)) * (1 if st.group(2) == "fast" else -1)
    if abs(offset) > accuracy_s:
        return ClockReading(False, offset, f"clock offset {offset:+.6f} s exceeds the accuracy {accuracy_s:g} s")
    return ClockReading(True, offset, "synced")


class ClockMonitor:
    """Run ``check`` now and every ``interval`` seconds (a daemon thread); keep ``state``; call
    ``on_change(reading)`` when the answer turns (and at the first check if out of sync). A
    recovery is recorded before ``state`` lets issuance resume, so the audit log never shows
    tokens granted ahead of the ``recovered`` entry."""

    def __init__(self, check, state: ClockState, *, interval: float = 1.0, on_change=None):
        self.check = check
        self.state = state
        self.interval = interval
        self.on_change = on_change
        self.last: ClockReading | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> ClockReading:
        try:
            r = self.check()
        except Exception as e:  # a failing check is out of sync, never a crash of the monitor
            r = ClockReading(False, None, f"clock check failed: {e}")
        changed = (self.last is None and not r.synced) or (self.last is not None and self.last.synced != r.synced)
        self.last = r
        if not r.synced:  # a loss stops issuance before it is recorded ...
            self.state.set(False)
        if changed and self.on_change is not None:
            try:
                self.on_change(r)
            except Exception:
                log.exception("recording the clock change failed")
        if r.synced:  # ... and a recovery is recorded before the first token is granted again
            self.state.set(True)
        return r

    def start(self) -> None:
        if self.last is None:
            self.poll()

        def loop():
            while not self._stop.wait(self.interval):
                self.poll()

        self._thread = threading.Thread(target=loop, name="unica-tsa-clock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
