"""unica as a service: the CA's faces over HTTPS (issue #13).

:func:`unica.service.app.create_app` builds the ASGI application (FastAPI on Starlette): the core
routes (``/healthz``, ``/readyz``, ``/metrics``, ``/whoami``, ``/openapi.json``), EST under
``/.well-known/est/`` (:mod:`unica.service.est`) and the REST API under ``/api/v1``
(:mod:`unica.service.api`). :mod:`unica.service.server` runs it on uvicorn with TLS, the peer's
certificate put into the ASGI scope. The service is stateless over the shared database: two
processes (or hosts) on one PostgreSQL answer as one; what a process keeps in memory is caches
(the CAs' keys, validated paths) and its own rate-limit buckets.
"""
