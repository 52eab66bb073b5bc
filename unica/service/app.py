"""The application: :func:`create_app` builds the FastAPI app of one service process.

FastAPI (on Starlette) gives the routing, the request models and the OpenAPI document from
the same declarations, so the document cannot drift from the routes; uvicorn (httptools and
uvloop) runs it (:mod:`unica.service.server`). The app keeps no state of its own between
requests beyond caches: the database is the service's memory, so any number of processes on one
PostgreSQL answer as one.

``app.state``: ``settings`` (:class:`~unica.service.settings.Settings`), ``store`` (opened per
process at start-up), ``issuers`` (one :class:`~unica.ca.issuance.IssuingCA` per CA and process,
its key loaded once, at the first issuance: :func:`get_issuer`).
"""

from __future__ import annotations

import contextlib
import threading

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from unica import __version__
from unica.service import metrics
from unica.service.idempotency import Idempotency
from unica.service.identity import CheckedCertificate, client_of, require_certificate
from unica.service.limits import Guard
from unica.service.problems import PROBLEM_JSON, Problem, from_exception, log
from unica.service.settings import Settings

#: the problem document, as OpenAPI describes every error answer
PROBLEM_SCHEMA = {
    "content": {PROBLEM_JSON: {"schema": {
        "type": "object", "required": ["type", "title", "status"],
        "properties": {"type": {"type": "string", "example": "urn:unica:problem:malformed"},
                       "title": {"type": "string"}, "status": {"type": "integer"},
                       "detail": {"type": "string"}}}}},
}


_ISSUER_CLASS: list = []


def _issuer_class():
    """IssuingCA with its issuances counted in the metrics (a subclass, so that the registry may
    copy it and reach its methods as an IssuingCA's)."""
    if not _ISSUER_CLASS:
        from unica.ca.issuance import IssuingCA

        class CountingIssuingCA(IssuingCA):
            def issue(self, *args, **kwargs):
                issued = super().issue(*args, **kwargs)
                metrics.issued(getattr(issued, "ca", None) or self.name, getattr(issued, "profile", "") or "")
                return issued

        _ISSUER_CLASS.append(CountingIssuingCA)
    return _ISSUER_CLASS[0]


def get_issuer(request: Request, ca_name: str):
    """The process's :class:`~unica.ca.issuance.IssuingCA` for ``ca_name`` (made once; its key
    is loaded at its first issuance, the PIN from ``UNICA_PIN``). Unknown CA: CANotFound (404)."""
    state = request.app.state
    with state.issuers_lock:
        issuer = state.issuers.get(ca_name)
    if issuer is None:
        made = _issuer_class()(state.store, ca_name)
        with state.issuers_lock:
            issuer = state.issuers.setdefault(ca_name, made)
    return issuer


def _problem_handler(request: Request, exc: Exception) -> Response:
    problem = from_exception(exc)
    if problem.status >= 500 and problem.slug == "internal":
        log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    if 400 <= problem.status < 500:
        metrics.refused(problem.slug)
    return problem.response()


def create_app(settings: Settings, *, store=None) -> FastAPI:
    """The service's ASGI application. ``store``: an open :class:`~unica.store.db.Store` (else
    one is opened from ``settings.db_url`` when the process starts)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        from unica.store.db import open_store

        own = store is None
        app.state.store = store or open_store(settings.db_url)
        try:
            yield
        finally:
            if own:
                app.state.store.dispose()

    app = FastAPI(title="unica", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json",
                  description="The CA as a service: EST (RFC 7030) enrollment, the registry of enterprises and "
                              "their applications, health and metrics. Errors are RFC 9457 problem details.",
                  responses={"default": {"description": "A problem (RFC 9457)", **PROBLEM_SCHEMA}})
    app.state.settings = settings
    app.state.store = store
    app.state.issuers = {}
    app.state.issuers_lock = threading.Lock()
    for exc in (Exception, HTTPException, RequestValidationError):
        app.add_exception_handler(exc, _problem_handler)

    @app.get("/healthz", tags=["service"], summary="Liveness: the process answers")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"], summary="Readiness: the database answers, at this version's schema",
             responses={503: {"description": "Not ready", **PROBLEM_SCHEMA}})
    def readyz(request: Request) -> dict:
        from unica.store.db import SCHEMA_HEAD, schema_revision

        try:
            rev = schema_revision(request.app.state.store)
        except Exception as e:  # noqa: BLE001 - any failure to answer is "not ready"
            raise Problem(503, "not-ready", detail=f"the database does not answer: {type(e).__name__}",
                          headers={"Retry-After": "5"}) from None
        if rev != SCHEMA_HEAD:
            raise Problem(503, "not-ready", detail=f"the database is at schema {rev}, this service needs {SCHEMA_HEAD}",
                          headers={"Retry-After": "5"})
        return {"status": "ready", "schema": rev}

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics (text exposition)",
             response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    def metrics_endpoint() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/whoami", tags=["service"], summary="The client as the service sees it (address, certificate)")
    def whoami(request: Request) -> JSONResponse:
        c = client_of(request.scope, settings)
        out: dict = {"address": c.address, "via_proxy": c.via_proxy, "certificate": None}
        if c.cert_der is not None:
            checked: CheckedCertificate = require_certificate(request)
            out["certificate"] = {"subject": checked.subject, "serial": checked.serial, "ca": checked.ca,
                                  "profile": checked.profile, "office": checked.office,
                                  "sha256": c.fingerprint}
        return JSONResponse(out)

    from unica.service import api, est, oidc, portal, portal_views

    app.include_router(est.router)
    app.include_router(api.router, prefix="/api/v1")
    app.include_router(oidc.router)
    app.include_router(portal.router)
    app.include_router(portal_views.router)
    app.add_middleware(Idempotency, settings=settings)
    app.add_middleware(Guard, settings=settings)
    return app
