"""Prometheus metrics: requests by route and status, latency, issuance, refusals by slug.

With more than one worker process (``unica serve --workers N``) the metrics are kept in
prometheus_client's *multiprocess mode*: ``unica serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` to a
fresh directory of its own before any worker starts (removed when it stops), every process
writes its samples there, and ``/metrics`` -- whichever worker answers it -- adds up all of
them. With one worker the same mode is used, so the two cases read alike.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

REQUESTS = Counter("unica_http_requests_total", "HTTP requests answered, by route template, method and status",
                   ["route", "method", "status"])
LATENCY = Histogram("unica_http_request_duration_seconds", "Time from the request's start to its answer",
                    ["route"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
ISSUED = Counter("unica_certificates_issued_total", "Certificates issued through the service, by CA and profile",
                 ["ca", "profile"])
REFUSALS = Counter("unica_refusals_total", "Requests refused (4xx problems, and 503 overloaded), by problem slug",
                   ["slug"])


def observe(route: str, method: str, status: int, seconds: float) -> None:
    REQUESTS.labels(route, method, str(status)).inc()
    LATENCY.labels(route).observe(seconds)


def refused(slug: str) -> None:
    REFUSALS.labels(slug).inc()


def issued(ca: str, profile: str) -> None:
    ISSUED.labels(ca, profile).inc()


def exposition() -> tuple[bytes, str]:
    """The text exposition of every process's metrics (multiprocess mode) or this one's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def process_exited(pid: int) -> None:
    """Forget a dead worker's live gauges (counters and histograms stay: they were answered)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
