"""Progress of long work on stderr: one helper for every bulk command.

* On a terminal (stderr is a TTY and ``TERM`` is not ``dumb``): a ``rich`` progress bar with
  done/total, rate and ETA, redrawn in place; it stays on screen when the work ends.
* Otherwise (a pipe, a log file, cron, CI): plain lines, never a carriage return, each a whole
  line a log reader can take alone::

      unica revoke: 500/2000 (25%), 4812/s, ETA 0.3 s; 2 refused
      unica revoke: 2000/2000 (100%), 5120/s, in 0.4 s; 2 refused

  Nothing for a run shorter than :data:`Progress.QUIET` seconds (a quick run's stderr holds
  only what went wrong: an error stays one line). After that, a line when another tenth of the
  total is done, or when :data:`Progress.EVERY` seconds passed without one -- at most about a
  dozen lines for any run, and a sign of life every half minute for a long one -- and a last
  line with the total time.

``UNICA_PROGRESS=never``: no progress at all, on a terminal or not. ``UNICA_PROGRESS=always``:
the plain lines, from the start of every run and on a terminal too (for logs that keep every
run's figures). Nothing is printed for ``total`` 0. rich is imported only for the terminal form,
so a command in a pipe (and every command's start-up) does not pay for it.

    with Progress("unica revoke", total) as p:
        for ...:
            p.update(done, note=f"{refused} refused")
"""

from __future__ import annotations

import os
import sys
import time

import click


def _on_terminal() -> bool:
    stream = sys.stderr
    return stream is not None and stream.isatty() and os.environ.get("TERM") != "dumb"


def _duration(seconds: float) -> str:
    """2.4 -> '2.4 s', 754 -> '12 min 34 s', 5400 -> '1 h 30 min'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = round(seconds)
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


class Progress:
    """Progress of ``total`` items of work named ``label`` (e.g. ``unica revoke`` or ``CA root``)."""

    #: seconds without a line after which a plain line is written anyway (not on a terminal)
    EVERY = 30.0
    #: seconds of work before the first plain line (not on a terminal)
    QUIET = 5.0
    #: a plain line each time this fraction more of the total is done
    STEP = 0.1

    def __init__(self, label: str, total: int, *, unit: str = "done", terminal: bool | None = None):
        self.label = label
        self.total = max(int(total), 0)
        self.unit = unit
        mode = os.environ.get("UNICA_PROGRESS", "").strip().lower()
        self.tty = (_on_terminal() if terminal is None else terminal) and mode != "always"
        self.quiet = 0.0 if mode == "always" else self.QUIET
        self.shown = False
        if mode == "never":
            self.total = 0
        self.start = self.last_time = time.monotonic()
        self.done = 0
        self.note = ""
        self.next_step = 1
        self.closed = False
        self._bar = None
        self._task = None
        if self.tty and self.total:
            self._start_bar()

    # --- the terminal form ---------------------------------------------------------------

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, ProgressColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        from rich.text import Text

        class Rate(ProgressColumn):
            def render(self, task):
                return Text("-/s" if not task.speed else f"{task.speed:,.0f}/s")

        self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(),
                        TextColumn("ETA"), TimeRemainingColumn(), TimeElapsedColumn(), TextColumn("{task.fields[note]}"),
                        console=Console(stderr=True, highlight=False), transient=False, redirect_stdout=False,
                        redirect_stderr=False, refresh_per_second=5)
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=self.total, note="")

    # --- both ----------------------------------------------------------------------------

    def update(self, done: int, note: str = "") -> None:
        """``done`` items of ``total`` are done; ``note``: what else to say (e.g. ``3 refused``)."""
        self.done, self.note = done, note
        if not self.total or self.closed:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=min(done, self.total), note=note)
            return
        now = time.monotonic()
        step = int(done * (1 / self.STEP) // self.total) if self.total else 0
        if done >= self.total:
            return  # the last line is close()'s, with the total time
        if now - self.start < self.quiet:
            return
        if step >= self.next_step or now - self.last_time >= self.EVERY or not self.shown:
            self.next_step = step + 1
            self._line(now, final=False)

    def _line(self, now: float, *, final: bool) -> None:
        self.last_time = now
        self.shown = True
        elapsed = max(now - self.start, 1e-6)
        rate = self.done / elapsed
        pct = 100 * self.done // self.total
        if final:
            when = f"in {_duration(elapsed)}"
        else:
            when = f"ETA {_duration((self.total - self.done) / rate)}" if rate > 0 else "ETA -"
        click.echo(f"{self.label}: {self.done}/{self.total} {self.unit} ({pct}%), {rate:,.0f}/s, {when}"
                   + (f"; {self.note}" if self.note else ""), err=True)

    def close(self) -> None:
        """The work ended: the bar's last state stays on the terminal; in a pipe, the last line."""
        if self.closed:
            return
        self.closed = True
        if self._bar is not None:
            self._bar.stop()
        elif self.total and (self.shown or time.monotonic() - self.start >= self.quiet):
            self._line(time.monotonic(), final=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._bar is not None or exc_type is None:
            self.close()  # after a failure, the error line says what happened: no last progress line
