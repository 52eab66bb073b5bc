"""OCSP responder (RFC 6960 / RFC 5019): request parsing, DER-level response signing,
pre-signed and live modes, an HTTP front and its own HTTP/1.1 server.

Layers, each usable alone: :mod:`.request` (parse) -> :mod:`.responder` (decide, sign or
look up) -> :mod:`.http` (``handle(method, path, body)``, also a raw ASGI app) ->
:mod:`.httpserver` / :mod:`.server` (asyncio + httptools on uvloop; worker processes). The database enters only
through :class:`.source.StatusSource` and :class:`.source.PresignedStore`.
"""

from unica.ocsp.request import CertID, MalformedRequest, OCSPRequestInfo, RequestLimits, parse_request
from unica.ocsp.response import GOOD, UNKNOWN, CertStatus, ResponseSigner, ResponseStatus, SignedResponse
from unica.ocsp.responder import Answer, IssuerIndex, Presigner, Responder, ServedCA
from unica.ocsp.source import InMemoryPresignedStore, InMemoryStatusSource, PresignedStore, StatusSource

__all__ = [
    "CertID", "MalformedRequest", "OCSPRequestInfo", "RequestLimits", "parse_request",
    "GOOD", "UNKNOWN", "CertStatus", "ResponseSigner", "ResponseStatus", "SignedResponse",
    "Answer", "IssuerIndex", "Presigner", "Responder", "ServedCA",
    "InMemoryPresignedStore", "InMemoryStatusSource", "PresignedStore", "StatusSource",
]
