"""Failed card logins limited per source address (issue #14: "login is limited per source").

:class:`FailureLimiter` counts a source's failed logins in a sliding window; once a source has
:attr:`max_failures` within :attr:`window` seconds, its next attempts are refused (the portal
answers 429 with ``Retry-After``) until the oldest failure leaves the window. Successful logins
do not count and do not reset the count (a thief holding one card cannot use it to buy more
guesses). The source is the client's address as :func:`unica.service.identity.client_of` sees
it (behind a trusted reverse proxy: the proxy's client).

In-process, per service process: with N worker processes a source may fail up to N times as
often. That is acceptable because every login also needs a one-time challenge from this portal
and a signature by a card unica issued: the limit slows down noise and guessing at the form,
it is not what makes a login safe. Memory is bounded (:attr:`max_sources`; the oldest entries go
first).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque

#: failures allowed per source and window before refusing
MAX_FAILURES = 5
#: the window, seconds
WINDOW = 60.0


class FailureLimiter:
    def __init__(self, max_failures: int = MAX_FAILURES, window: float = WINDOW, max_sources: int = 65536):
        if max_failures < 1 or window <= 0:
            raise ValueError("max_failures >= 1 and window > 0")
        self.max_failures = max_failures
        self.window = float(window)
        self.max_sources = max_sources
        self._failures: OrderedDict[str, deque] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque | None:
        q = self._failures.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._failures[key]
            return None
        return q

    def retry_after(self, source: str | None, now: float | None = None) -> int:
        """0 if ``source`` may try to log in now, else the whole seconds to wait."""
        now = time.monotonic() if now is None else now
        key = source or "-"
        with self._lock:
            q = self._recent(key, now)
            if q is None or len(q) < self.max_failures:
                return 0
            return max(1, math.ceil(q[len(q) - self.max_failures] + self.window - now))

    def failed(self, source: str | None, now: float | None = None) -> None:
        """Record one failed login of ``source``."""
        now = time.monotonic() if now is None else now
        key = source or "-"
        with self._lock:
            q = self._recent(key, now)
            if q is None:
                q = self._failures[key] = deque(maxlen=self.max_failures * 4)
            q.append(now)
            self._failures.move_to_end(key)
            while len(self._failures) > self.max_sources:
                self._failures.popitem(last=False)
