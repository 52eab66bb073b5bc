"""RFC 9457 problem details: every error the service answers is one of these.

A refusal has a stable ``type`` (``urn:unica:problem:<slug>``) that clients may match on; the
``detail`` says what is wrong in words. Library errors are mapped here (:func:`from_exception`);
anything else is a 500 ``internal`` whose details go to the server's log, never to the client.
"""

from __future__ import annotations

import json
import logging

from starlette.exceptions import HTTPException

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("unica.service")

#: the title of each slug the core uses (others bring their own)
TITLES = {
    "malformed": "Malformed request",
    "not-authorized": "Not authorized",
    "policy": "Refused by policy",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "unsupported-media-type": "Unsupported media type",
    "body-too-large": "Request body too large",
    "headers-too-large": "Request headers too large",
    "rate-limited": "Too many requests",
    "timeout": "Request took too long",
    "client-too-slow": "Request not received in time",
    "client-certificate": "Client certificate refused",
    "client-certificate-required": "Client certificate required",
    "untrusted-proxy": "Proxy header from an untrusted address",
    "idempotency-mismatch": "Idempotency key reused with another request",
    "idempotency-in-progress": "A request with this idempotency key is in progress",
    "approval-pending": "Waiting for approval",
    "unavailable": "Service unavailable",
    "not-ready": "Not ready",
    "internal": "Internal error",
}


class Problem(HTTPException):
    """An HTTP error answered as an RFC 9457 problem. A subclass of Starlette's HTTPException,
    so FastAPI passes it through body parsing unchanged."""

    def __init__(self, status: int, slug: str, title: str | None = None, detail: str | None = None, *,
                 headers: dict | None = None, extra: dict | None = None):
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.status = status
        self.slug = slug
        self.title = title or TITLES.get(slug) or slug.replace("-", " ").capitalize()
        self.extra = dict(extra or {})

    def __str__(self) -> str:
        return f"{self.status} {self.slug}: {self.detail or self.title}"

    def to_dict(self) -> dict:
        out = {"type": f"urn:unica:problem:{self.slug}", "title": self.title, "status": self.status}
        if self.detail:
            out["detail"] = self.detail
        out.update(self.extra)
        return out

    def body(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False).encode("utf-8")

    def response(self):
        from starlette.responses import Response

        return Response(self.body(), status_code=self.status, media_type=PROBLEM_JSON, headers=self.headers)

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        body = self.body()
        out = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
        for k, v in (self.headers or {}).items():
            out.append((k.lower().encode("latin-1"), str(v).encode("latin-1")))
        return out

    async def send(self, send) -> None:
        """Answer with this problem on a raw ASGI ``send``."""
        await send({"type": "http.response.start", "status": self.status, "headers": self.raw_headers()})
        await send({"type": "http.response.body", "body": self.body()})


#: EnrollmentRefused slugs answered 401 (the credentials -- application id and code -- do not
#: hold); the others 403. An unknown application and a wrong code look the same from outside.
_ENROLLMENT_401 = {"code-invalid", "code-expired", "code-used", "code-locked", "no-such-application"}

_HTTP_SLUGS = {400: "malformed", 401: "not-authorized", 403: "not-authorized", 404: "not-found",
               405: "method-not-allowed", 406: "malformed", 413: "body-too-large", 415: "unsupported-media-type",
               422: "malformed", 429: "rate-limited"}


def from_exception(exc: BaseException) -> Problem:
    """The problem a (library or framework) exception is answered with."""
    from fastapi.exceptions import RequestValidationError

    from unica import errors

    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, RequestValidationError):
        return Problem(400, "malformed", detail=_validation_detail(exc))
    if isinstance(exc, HTTPException):
        slug = _HTTP_SLUGS.get(exc.status_code, "malformed" if exc.status_code < 500 else "unavailable")
        detail = exc.detail if isinstance(exc.detail, str) else None
        return Problem(exc.status_code, slug, detail=detail, headers=exc.headers)
    if type(exc).__name__ == "EnrollmentRefused":
        slug = getattr(exc, "slug", None) or getattr(exc, "reason_slug", None) or "policy"
        return Problem(401 if slug in _ENROLLMENT_401 else 403, slug, detail=_message(exc))
    slug = getattr(exc, "slug", None) if isinstance(getattr(exc, "slug", None), str) else None
    if type(exc).__name__.endswith("NotFound"):
        return Problem(404, "not-found", detail=_message(exc))
    if type(exc).__name__ == "RegistryConflict":
        return Problem(409, slug or "conflict", title="Conflicts with the registry", detail=_message(exc))
    if isinstance(exc, errors.PolicyViolation) and slug and not isinstance(exc, errors.NotAuthorized):
        return Problem(403, slug, title="Refused", detail=_message(exc))
    if isinstance(exc, errors.ApprovalPending):
        return Problem(202, "approval-pending", detail=_message(exc))
    if isinstance(exc, errors.NotAuthorized):
        return Problem(403, "not-authorized", detail=_message(exc))
    if isinstance(exc, errors.PolicyViolation):
        return Problem(403, "policy", detail=_message(exc))
    if isinstance(exc, (errors.InputError, errors.ProfileError)):
        return Problem(400, "malformed", detail=_message(exc))
    if isinstance(exc, errors.ConfigurationError):
        return Problem(503, "unavailable", detail="the service is not configured for this request")
    if isinstance(exc, (errors.StoreError, errors.KeyBackendError, errors.EnvironmentFailure)):
        log.error("service unavailable: %s", _message(exc))
        return Problem(503, "unavailable", detail="the CA cannot serve this request now; try again later",
                       headers={"Retry-After": "5"})
    if isinstance(exc, errors.UnicaError):
        return Problem(400, "malformed", detail=_message(exc))
    return Problem(500, "internal", detail="an internal error; it has been logged")


def _message(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__


def _validation_detail(exc) -> str:
    try:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return f"{where or 'request'}: {first.get('msg', 'invalid')}"[:300]
    except Exception:  # noqa: BLE001 - a description of the error, never the error itself
        return "the request does not match the expected form"
