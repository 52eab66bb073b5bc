"""Bounded network fetching for the path-validation engine (pyhanko-certvalidator).

:func:`make_fetchers` builds the ``pyhanko_certvalidator.fetchers.Fetchers`` one validation
passes to ``ValidationContext(..., fetchers=..., allow_fetching=True)``: CRLs from CRL
distribution points (and freshest-CRL pointers), OCSP responses (POST) from the AIA, and
issuer certificates from AIA caIssuers (a DER certificate, PEM, or a certs-only PKCS#7,
RFC 5280 4.2.2.1).

Every fetch is bounded (:class:`FetchLimits`): a deadline for the whole transfer (connect,
headers, body, redirects), a size limit per kind, a number of network requests and of
caIssuers steps per validation, at most a few redirects, and http/https URLs only.
Fetched data is kept in a :class:`FetchCache` shared across validations (the Verifier owns
one): CRLs and OCSP responses until their nextUpdate, issuer certificates for a while, and
failures briefly. Concurrent validations needing the same URL make one request.

What was fetched, and how it went, is written to a :class:`FetchLog` (one per validation)
for the report's evidence. Every failure reaches the engine as the fetch error type it
treats as missing data (``CRLFetchError`` / ``OCSPFetchError``; an issuer certificate that
cannot be had is simply not found).

``fetcher(url, body, content_type, timeout, max_bytes) -> bytes`` (the Verifier's
``fetcher=`` hook) replaces HTTP; the URL checks, limits, cache and log still apply.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import dataclasses
import datetime as _dt
import functools
import hashlib
import http.client
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Iterable, NamedTuple

from asn1crypto import cms, core, crl as acrl, ocsp as aocsp, pem, x509 as ax
from pyhanko_certvalidator.errors import CRLFetchError, OCSPFetchError
from pyhanko_certvalidator.fetchers import CertificateFetcher, CRLFetcher, Fetchers, OCSPFetcher
from pyhanko_certvalidator.fetchers.common_utils import format_ocsp_request
from pyhanko_certvalidator.util import get_ac_extension_value, get_relevant_crl_dps, issuer_serial

from unica.errors import FetchError

__all__ = ["FetchCache", "FetchLimits", "FetchLog", "FetchRecord", "fetch_log", "http_fetch", "make_fetchers",
           "url_allowed"]

MiB = 1024 * 1024
_USER_AGENT = "unica-verify"
_CERT_TYPES = ("application/pkix-cert, application/pkcs7-mime, application/x-x509-ca-cert, "
               "application/x-pkcs7-certificates, application/x-pem-file;q=0.5, */*;q=0.1")

#: the Verifier's ``fetcher=`` hook: (url, body, content_type, timeout, max_bytes) -> bytes
Transport = Callable[[str, "bytes | None", "str | None", float, int], bytes]


# --- limits -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FetchLimits:
    """Bounds on the network activity of one validation.

    ``timeout``: seconds for one fetch, whole transfer (connect, headers, body, redirects).
    ``max_*_bytes``: the largest response accepted, per kind.
    ``max_fetches``: network requests per validation (cache hits are free); further fetches
    are refused. ``max_total_bytes``: no new request once this much has been downloaded.
    ``max_ca_issuers_depth``: caIssuers steps above a certificate the engine was given
    (the leaf's issuer is step 1). ``max_urls_per_object``: URLs of one kind followed per
    certificate or CRL. ``max_certs_per_response``: certificates taken from one caIssuers
    response. ``max_redirects``: HTTP redirects followed per fetch.
    """

    timeout: float = 5.0
    max_crl_bytes: int = 16 * MiB
    max_ocsp_bytes: int = 1 * MiB
    max_cert_bytes: int = 1 * MiB
    max_fetches: int = 16
    max_total_bytes: int = 64 * MiB
    max_ca_issuers_depth: int = 4
    max_urls_per_object: int = 4
    max_certs_per_response: int = 16
    max_redirects: int = 3

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "timeout":
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                    raise ValueError(f"FetchLimits.timeout must be a positive number, not {v!r}")
                continue
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"FetchLimits.{f.name} must be an int, not {v!r}")
            if v < 0 or (v == 0 and f.name not in ("max_redirects", "max_fetches", "max_ca_issuers_depth")):
                raise ValueError(f"FetchLimits.{f.name} must be positive, not {v}")


# --- one bounded HTTP fetch ---------------------------------------------------------------


def url_allowed(url: str) -> bool:
    """True for an absolute http/https URL with a host (and nothing odd in it)."""
    try:
        _check_url(url)
        return True
    except FetchError:
        return False


def _check_url(url: str, what: str = "URL") -> None:
    if not isinstance(url, str) or not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        raise FetchError(f"{url!r}: not a fetchable {what} (non-ASCII, space or control character)")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError as e:
        raise FetchError(f"{url}: malformed {what}: {e}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise FetchError(f"{url}: only http and https URLs are fetched")
    if not parts.hostname:
        raise FetchError(f"{url}: {what} has no host")


class _Watchdog:
    """Enforces a deadline on one fetch: at the deadline every socket it watches is shut down,
    which wakes any blocked connect/recv/TLS read (a socket timeout alone bounds each wait,
    not the transfer: a server dripping bytes could hold a fetch for hours)."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds
        self.expired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(0.001, self.deadline - time.monotonic())

    def passed(self) -> bool:
        """The deadline has come (the socket timeout, set to the time left, may beat the timer)."""
        return self.expired or time.monotonic() >= self.deadline - 0.01

    def register(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            if self.expired:
                _shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            for s in self._socks:
                _shutdown(s)

    def cancel(self) -> None:
        self._timer.cancel()


def _shutdown(sock: socket.socket) -> None:
    try:
        # the plain socket's shutdown, also for an SSLSocket: no TLS close_notify from this thread
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _watched(conn_class, watch: _Watchdog):
    def make(host, **kw):
        conn = conn_class(host, **kw)
        create = conn._create_connection

        def create_and_watch(address, timeout=None, source_address=None, *a, **k):
            t = watch.remaining() if timeout is None else min(timeout, watch.remaining())
            sock = create(address, t, source_address, *a, **k)
            watch.register(sock)
            return sock

        conn._create_connection = create_and_watch
        return conn

    return make


_TLS: ssl.SSLContext | None = None
_TLS_LOCK = threading.Lock()


def _tls_context() -> ssl.SSLContext:
    global _TLS
    with _TLS_LOCK:
        if _TLS is None:
            _TLS = ssl.create_default_context()
        return _TLS


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watch: _Watchdog):
        super().__init__()
        self._watch = watch

    def http_open(self, req):
        return self.do_open(_watched(http.client.HTTPConnection, self._watch), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watch: _Watchdog):
        super().__init__(context=_tls_context())
        self._watch = watch

    def https_open(self, req):
        return self.do_open(_watched(http.client.HTTPSConnection, self._watch), req, context=self._context)


class _RedirectHandler(urllib.request.BaseHandler):
    """Follows at most ``limit`` redirects in all, to http/https only, without reading the
    redirect's body (urllib's own handler follows 10, also to ftp://, and reads each body whole)."""

    def __init__(self, limit: int, watch: _Watchdog):
        self.limit = limit
        self.watch = watch

    def http_error_302(self, req, fp, code, msg, headers):
        fp.close()
        origin = getattr(req, "unica_origin", req.full_url)
        n = getattr(req, "unica_redirects", 0) + 1
        if n > self.limit:
            raise FetchError(f"{origin}: more than {self.limit} redirects")
        loc = headers.get("Location")
        if not loc:
            raise FetchError(f"{origin}: HTTP {code} redirect without a Location")
        new_url = urllib.parse.urljoin(req.full_url, loc.strip())
        try:
            _check_url(new_url, "redirect target")
        except FetchError as e:
            raise FetchError(f"{origin}: redirected to {e}") from None
        method = req.get_method()
        hdrs = dict(req.headers)
        data = None
        if method == "POST":
            if code not in (307, 308):
                raise FetchError(f"{origin}: HTTP {code} redirect would turn the POST into a GET")
            data = req.data
        else:
            method = "GET"
            hdrs = {k: v for k, v in hdrs.items() if k.lower() != "content-type"}
        new = urllib.request.Request(new_url, data=data, headers=hdrs, method=method)
        new.unica_origin = origin
        new.unica_redirects = n
        return self.parent.open(new, timeout=self.watch.remaining())

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def http_fetch(url: str, *, body: bytes | None = None, content_type: str | None = None,
               timeout: float, max_bytes: int, max_redirects: int = 3, accept: str | None = None) -> bytes:
    """GET ``url`` (POST ``body`` when given) and return the response body.

    Raises :class:`unica.errors.FetchError` for a non-http(s) URL, a connection failure,
    an HTTP status other than 2xx, more than ``max_redirects`` redirects (or one to another
    scheme), a body larger than ``max_bytes`` (refused on its Content-Length before
    reading, else as soon as one byte too many arrives), or a transfer not finished within
    ``timeout`` seconds in all. Memory use is bounded by ``max_bytes``.
    """
    _check_url(url)
    watch = _Watchdog(timeout)
    opener = urllib.request.OpenerDirector()
    for h in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(), _HTTPHandler(watch),
              _HTTPSHandler(watch), urllib.request.HTTPDefaultErrorHandler(),
              _RedirectHandler(max_redirects, watch), urllib.request.HTTPErrorProcessor()):
        opener.add_handler(h)
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    req.add_header("User-Agent", _USER_AGENT)
    if accept:
        req.add_header("Accept", accept)
    if content_type:
        req.add_header("Content-Type", content_type)
    late = FetchError(f"{url}: fetch took longer than {timeout:g} s")
    n = 0
    try:
        with opener.open(req, timeout=watch.remaining()) as resp:
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
                raise FetchError(f"{url}: response larger than {max_bytes} bytes "
                                 f"(Content-Length {int(declared)})")
            chunks: list[bytes] = []
            while n <= max_bytes:
                if watch.expired:
                    raise late
                chunk = resp.read1(min(65536, max_bytes + 1 - n))
                if not chunk:
                    break
                chunks.append(chunk)
                n += len(chunk)
    except FetchError:
        raise
    except urllib.error.HTTPError as e:
        e.close()
        raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (OSError, http.client.HTTPException, ValueError) as e:
        if watch.passed():
            raise late from None
        raise FetchError(f"{url}: fetch failed: {type(e).__name__}: {e}") from None
    finally:
        watch.cancel()
    if watch.expired:  # the body may be cut short by the shutdown
        raise late
    if n > max_bytes:
        raise FetchError(f"{url}: response larger than {max_bytes} bytes")
    return b"".join(chunks)


# --- the shared cache ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Entry:
    """The outcome of one fetch: the bytes, or why there are none."""

    data: bytes | None
    error: str | None
    url: str


_UNDATED = object()  # "no nextUpdate" (as opposed to "not revocation data")


class FetchCache:
    """Fetched bytes shared across validations; thread-safe.

    CRLs and OCSP responses are kept until their nextUpdate, at most ``revinfo_ttl``
    seconds (``undated_ttl`` without a nextUpdate); issuer certificates ``cert_ttl``
    seconds; failures ``negative_ttl`` seconds. At most ``max_entries`` entries and
    ``max_bytes`` bytes (least recently used go first). Raw bytes are stored, and each
    validation parses its own objects (asn1crypto objects parse lazily: not shared
    between threads).
    """

    def __init__(self, *, max_entries: int = 1024, max_bytes: int = 128 * MiB, revinfo_ttl: float = 3600.0,
                 cert_ttl: float = 3600.0, negative_ttl: float = 30.0, undated_ttl: float = 300.0):
        if max_entries < 1 or max_bytes < 1 or min(revinfo_ttl, cert_ttl, negative_ttl, undated_ttl) < 0:
            raise ValueError("FetchCache sizes must be positive and lifetimes not negative")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.revinfo_ttl = revinfo_ttl
        self.cert_ttl = cert_ttl
        self.negative_ttl = negative_ttl
        self.undated_ttl = undated_ttl
        self._d: collections.OrderedDict[Any, tuple[_Entry, float, int]] = collections.OrderedDict()
        self._bytes = 0
        self._inflight: dict[Any, tuple[concurrent.futures.Future, float]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._d)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self._bytes = 0

    def _ttl(self, entry: _Entry, next_update) -> float:
        if entry.data is None:
            return self.negative_ttl
        if next_update is None:  # not revocation data: an issuer certificate
            return self.cert_ttl
        if next_update is _UNDATED:
            return min(self.revinfo_ttl, self.undated_ttl)
        left = (next_update - _dt.datetime.now(_dt.timezone.utc)).total_seconds()
        # already past its nextUpdate: the engine will judge it; do not re-ask at once
        return min(self.revinfo_ttl, left) if left > 0 else min(self.revinfo_ttl, self.negative_ttl)

    def _begin(self, key, may_fetch: bool, stale_after: float):
        """("hit", entry) | ("wait", future) | ("own", future) | ("none", None), atomically.
        A fetch in flight for longer than ``stale_after`` (a hung injected fetcher) is not
        waited for: the next caller fetches anew."""
        now = time.monotonic()
        with self._lock:
            item = self._d.get(key)
            if item is not None:
                if now < item[1]:
                    self._d.move_to_end(key)
                    return "hit", item[0]
                del self._d[key]
                self._bytes -= item[2]
            flight = self._inflight.get(key)
            if flight is not None and now - flight[1] < stale_after:
                return "wait", flight[0]
            if not may_fetch:
                return "none", None
            fut: concurrent.futures.Future = concurrent.futures.Future()
            self._inflight[key] = (fut, now)
            return "own", fut

    def _finish(self, key, fut: concurrent.futures.Future, entry: _Entry, next_update) -> None:
        ttl = self._ttl(entry, next_update)
        size = len(entry.data or b"") + 256
        with self._lock:
            flight = self._inflight.get(key)
            if flight is not None and flight[0] is fut:
                del self._inflight[key]
            old = self._d.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            if ttl > 0 and size <= self.max_bytes:
                self._d[key] = (entry, time.monotonic() + ttl, size)
                self._bytes += size
                while len(self._d) > self.max_entries or self._bytes > self.max_bytes:
                    _, (_, _, s) = self._d.popitem(last=False)
                    self._bytes -= s
        try:
            fut.set_result(entry)
        except concurrent.futures.InvalidStateError:  # cancelled by a waiter's loop shutting down
            pass


# --- the fetch log ------------------------------------------------------------------------


class FetchRecord(NamedTuple):
    """One URL the engine wanted. ``kind``: "crl", "ocsp" or "ca-issuers". ``status``:
    "fetched" (a request was made and gave usable data), "cached" (data from the cache,
    or from a concurrent validation's request), "failed" (the request, or a cached earlier
    attempt, failed: ``message`` says why), "refused" (not requested: a non-http(s) URL or
    a limit; ``message`` says which)."""

    kind: str
    url: str
    status: str
    message: str = ""


class FetchLog:
    """The :class:`FetchRecord` of one validation, in order."""

    def __init__(self):
        self._records: list[FetchRecord] = []
        self._lock = threading.Lock()

    def add(self, kind: str, url: str, status: str, message: str = "") -> None:
        with self._lock:
            self._records.append(FetchRecord(kind, url, status, message))

    @property
    def records(self) -> tuple[FetchRecord, ...]:
        with self._lock:
            return tuple(self._records)

    def __iter__(self):
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"FetchLog({list(self.records)!r})"


# --- parsing ------------------------------------------------------------------------------


class _Malformed(Exception):
    pass


def _load_crl(data: bytes) -> acrl.CertificateList:
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    c = acrl.CertificateList.load(data, strict=True)
    tbs = c["tbs_cert_list"]
    tbs["issuer"].native  # noqa: B018 -- force the parse of what is read first
    tbs["this_update"].native  # noqa: B018
    return c


def _inspect_crl(data: bytes):
    try:
        nu = _load_crl(data)["tbs_cert_list"]["next_update"].native
    except (ValueError, TypeError, KeyError) as e:
        raise _Malformed(f"not a DER or PEM CRL: {e}") from None
    return nu if nu is not None else _UNDATED


def _load_ocsp(data: bytes) -> aocsp.OCSPResponse:
    return aocsp.OCSPResponse.load(data, strict=True)


def _inspect_ocsp(serial: int):
    def inspect(data: bytes):
        try:
            r = _load_ocsp(data)
            status = r["response_status"].native
        except (ValueError, TypeError, KeyError) as e:
            raise _Malformed(f"not a DER OCSP response: {e}") from None
        if status != "successful":
            raise _Malformed(f"OCSP responder answered {status!r}")
        try:
            basic = r["response_bytes"]["response"].parsed
            updates = [s["next_update"].native for s in basic["tbs_response_data"]["responses"]
                       if s["cert_id"]["serial_number"].native == serial]
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise _Malformed(f"malformed OCSP response: {e}") from None
        dated = [u for u in updates if u is not None]
        return min(dated) if dated else _UNDATED

    return inspect


def _pkcs7_certs(der: bytes) -> list[ax.Certificate]:
    ci = cms.ContentInfo.load(der, strict=True)
    if ci["content_type"].native != "signed_data":
        raise ValueError(f"PKCS#7 content is {ci['content_type'].native!r}, not signedData")
    certs = ci["content"]["certificates"]
    out = []
    if isinstance(certs, cms.CertificateSet):
        for choice in certs:
            if choice.name == "certificate":
                out.append(ax.Certificate.load(choice.chosen.dump()))
    return out


def _unpack_certs(data: bytes, limit: int) -> list[ax.Certificate]:
    """Certificates from a caIssuers response: DER certificate, certs-only PKCS#7 (DER), or
    PEM of either (RFC 5280 4.2.2.1 allows the first two; PEM is served in the wild)."""
    out: list[ax.Certificate] = []
    if pem.detect(data):
        for type_name, _, der in pem.unarmor(data, multiple=True):
            if type_name in ("CERTIFICATE", "X509 CERTIFICATE"):
                out.append(ax.Certificate.load(der, strict=True))
            elif type_name in ("PKCS7", "CMS"):
                out.extend(_pkcs7_certs(der))
            if len(out) >= limit:
                break
    else:
        first = core.Sequence.load(data, strict=True)
        if len(first) == 2:  # ContentInfo: contentType, [0] content
            out = _pkcs7_certs(data)
        else:  # Certificate: tbsCertificate, signatureAlgorithm, signatureValue
            out = [ax.Certificate.load(data, strict=True)]
    return out[:limit]


def _inspect_certs(limit: int):
    def inspect(data: bytes):
        try:
            certs = _unpack_certs(data, limit)
            for c in certs:
                c.native  # noqa: B018 -- fail here, not inside the path builder
        except (ValueError, TypeError, KeyError) as e:
            raise _Malformed(f"not a certificate, PEM or certs-only PKCS#7: {e}") from None
        if not certs:
            raise _Malformed("no certificate in the response")
        return None

    return inspect


# --- the per-validation session -----------------------------------------------------------


class _Session:
    """State of one validation: limits, request counters, log, per-validation memo."""

    def __init__(self, limits: FetchLimits, cache: FetchCache, transport: Transport | None, log: FetchLog):
        self.limits = limits
        self.cache = cache
        self.transport = transport
        self.log = log
        self.requests = 0
        self.bytes = 0
        self._memo: dict[Any, asyncio.Future] = {}
        #: cache key -> the status logged for it in this validation
        self.status: dict[Any, str] = {}

    def _note(self, key, kind: str, url: str, status: str, message: str = "") -> None:
        self.status[key] = status
        self.log.add(kind, url, status, message)

    def urls(self, kind: str, candidates: Iterable[str]) -> tuple[list[str], list[str]]:
        """(URLs to fetch, reasons for those refused); refusals are logged."""
        out: list[str] = []
        refused: list[str] = []
        cap = self.limits.max_urls_per_object
        for u in candidates:
            if u in out:
                continue
            try:
                _check_url(u)
            except FetchError as e:
                self.log.add(kind, str(u), "refused", str(e))
                refused.append(str(e))
                continue
            if len(out) >= cap:
                msg = f"{u}: more than {cap} {kind} URLs in one object"
                self.log.add(kind, u, "refused", msg)
                refused.append(msg)
                continue
            out.append(u)
        return out, refused

    def _limit_reached(self) -> str | None:
        lim = self.limits
        if self.requests >= lim.max_fetches:
            return f"fetch limit of {lim.max_fetches} requests per validation reached"
        if self.bytes >= lim.max_total_bytes:
            return f"fetch limit of {lim.max_total_bytes} bytes per validation reached"
        return None

    async def get(self, kind: str, key, url: str, *, body: bytes | None, content_type: str | None,
                  max_bytes: int, accept: str, inspect) -> _Entry:
        """The outcome for ``key`` (fetched once per validation, and shared through the cache)."""
        task = self._memo.get(key)
        if task is None:
            task = self._memo[key] = asyncio.ensure_future(
                self._get(kind, key, url, body, content_type, max_bytes, accept, inspect))
        return await asyncio.shield(task)

    async def _get(self, kind, key, url, body, content_type, max_bytes, accept, inspect) -> _Entry:
        limit = self._limit_reached()
        grace = self.limits.timeout + 1.0
        state, obj = self.cache._begin(key, may_fetch=limit is None, stale_after=2 * grace)
        if state == "hit":
            if obj.data is not None and len(obj.data) > max_bytes:  # cached under larger limits
                self._note(key, kind, url, "failed", f"cached response larger than {max_bytes} bytes")
                return _Entry(None, f"{url}: response larger than {max_bytes} bytes", url)
            if obj.data is not None:
                self._note(key, kind, url, "cached", f"{len(obj.data)} bytes")
            else:
                self._note(key, kind, url, "failed", f"cached failure: {obj.error}")
            return obj
        if state == "none":
            self._note(key, kind, url, "refused", limit)
            return _Entry(None, f"{url}: {limit}", url)
        if state == "wait":
            try:
                entry = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(obj)), grace)
            except asyncio.TimeoutError:
                entry = _Entry(None, f"{url}: a concurrent fetch took longer than {self.limits.timeout:g} s", url)
            if entry.data is not None and len(entry.data) > max_bytes:
                entry = _Entry(None, f"{url}: response larger than {max_bytes} bytes", url)
            if entry.data is not None:
                self._note(key, kind, url, "cached", f"{len(entry.data)} bytes, fetched by a concurrent validation")
            else:
                self._note(key, kind, url, "failed", f"concurrent fetch failed: {entry.error}")
            return entry
        self.requests += 1
        # What asyncio.to_thread does, but submitted now rather than when a task first runs:
        # once this key is marked in flight, the thread must run and publish its outcome,
        # even if this validation is cancelled at once (its loop shutting down, say).
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        try:
            work = loop.run_in_executor(None, functools.partial(
                ctx.run, self._run, key, obj, url, body, content_type, max_bytes, accept, inspect))
        except RuntimeError as e:  # the executor is shut down
            entry = _Entry(None, f"{url}: cannot fetch: {e}", url)
            self.cache._finish(key, obj, entry, None)
            self._note(key, kind, url, "failed", entry.error)
            return entry
        try:
            # HTTP fetches end by their own deadline; the grace only guards an injected fetcher.
            # The thread finishes (and fills the cache) even if this validation stops waiting.
            entry = await asyncio.wait_for(asyncio.shield(work), grace)
        except asyncio.TimeoutError:
            entry = _Entry(None, f"{url}: fetch took longer than {self.limits.timeout:g} s", url)
        if entry.data is not None:
            self.bytes += len(entry.data)
            self._note(key, kind, url, "fetched", f"{len(entry.data)} bytes")
        else:
            self._note(key, kind, url, "failed", entry.error or "")
        return entry

    def _run(self, key, fut, url, body, content_type, max_bytes, accept, inspect) -> _Entry:
        """In a worker thread: fetch, check, and publish to the cache (always, even on a bug)."""
        entry = _Entry(None, f"{url}: fetch aborted", url)
        next_update = None
        try:
            if self.transport is not None:
                data = self.transport(url, body, content_type, self.limits.timeout, max_bytes)
            else:
                data = http_fetch(url, body=body, content_type=content_type, timeout=self.limits.timeout,
                                  max_bytes=max_bytes, max_redirects=self.limits.max_redirects, accept=accept)
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise FetchError(f"{url}: the fetcher returned {type(data).__name__}, not bytes")
            data = bytes(data)
            if len(data) > max_bytes:
                raise FetchError(f"{url}: response larger than {max_bytes} bytes")
            next_update = inspect(data)
            entry = _Entry(data, None, url)
        except FetchError as e:
            entry = _Entry(None, str(e), url)
        except _Malformed as e:
            entry = _Entry(None, f"{url}: {e}", url)
        except Exception as e:  # noqa: BLE001 -- an injected fetcher's own failure is missing data too
            entry = _Entry(None, f"{url}: fetch failed: {type(e).__name__}: {e}", url)
        finally:
            self.cache._finish(key, fut, entry, next_update)
        return entry


def _digest(obj) -> bytes:
    if isinstance(obj, (bytes, bytearray)):
        der = bytes(obj)
    elif hasattr(obj, "dump"):
        der = obj.dump()
    else:
        from cryptography.hazmat.primitives.serialization import Encoding

        der = obj.public_bytes(Encoding.DER)
    return hashlib.sha256(der).digest()


def _aia(cert) -> list:
    if isinstance(cert, ax.Certificate):
        return list(cert.authority_information_access_value or ())
    return list(get_ac_extension_value(cert, "authority_information_access") or ())


def _aia_urls(cert, method: str) -> list[str]:
    out = []
    for entry in _aia(cert):
        if entry["access_method"].native == method and entry["access_location"].name == "uniform_resource_identifier":
            out.append(entry["access_location"].native)
    return out


def _dp_urls(dps) -> list[str]:
    out = []
    for dp in dps:
        name = dp["distribution_point"]
        if name.name != "full_name":
            continue  # relative names: nothing to fetch over HTTP
        for gn in name.chosen:
            if gn.name == "uniform_resource_identifier":
                out.append(gn.native)
    return out


# --- the three fetchers -------------------------------------------------------------------


class UnicaCRLFetcher(CRLFetcher):
    def __init__(self, session: _Session):
        self._s = session
        self.log = session.log
        self._by_cert: dict[bytes, list | Exception] = {}
        self._crls: dict[bytes, acrl.CertificateList] = {}
        self._origin: dict[bytes, tuple[str, str]] = {}

    async def fetch(self, cert, *, use_deltas=True):
        iss = issuer_serial(cert)
        done = self._by_cert.get(iss)
        if isinstance(done, Exception):
            raise done
        if done is not None:
            return done
        urls, refused = self._s.urls("crl", _dp_urls(get_relevant_crl_dps(cert, use_deltas=use_deltas)))
        entries = await asyncio.gather(*(self._one(u) for u in urls))
        crls, errors = [], list(refused)
        for e in entries:
            if e.data is None:
                errors.append(e.error)
                continue
            c = _load_crl(e.data)
            h = hashlib.sha256(c.dump()).digest()
            self._crls[h] = c
            self._origin[h] = (e.url, self._s.status.get(("crl", e.url), "fetched"))
            crls.append(c)
        if not crls and errors:
            exc = CRLFetchError("; ".join(errors))
            self._by_cert[iss] = exc
            raise exc
        self._by_cert[iss] = crls
        return crls

    async def _one(self, url: str) -> _Entry:
        lim = self._s.limits
        return await self._s.get("crl", ("crl", url), url, body=None, content_type=None,
                                 max_bytes=lim.max_crl_bytes, accept="application/pkix-crl",
                                 inspect=_inspect_crl)

    def fetched_crls(self):
        return list(self._crls.values())

    def origin_of(self, crl) -> tuple[str, str] | None:
        """(URL, "fetched" | "cached") of a CRL this fetcher returned (asn1crypto or
        cryptography object), else None."""
        return self._origin.get(_digest(crl))

    def fetched_crls_for_cert(self, cert):
        done = self._by_cert[issuer_serial(cert)]
        if isinstance(done, Exception):
            raise KeyError(issuer_serial(cert))
        return done


class UnicaOCSPFetcher(OCSPFetcher):
    """POSTs a SHA-1 CertID request (RFC 5019), without a nonce: responses are cached and
    shared, as pre-produced responses are anyway. The responder URLs are tried in turn."""

    def __init__(self, session: _Session):
        self._s = session
        self.log = session.log
        self._done: dict[Any, aocsp.OCSPResponse | Exception] = {}
        self._origin: dict[bytes, tuple[str, str]] = {}

    async def fetch(self, cert, authority):
        tag = (issuer_serial(cert), authority.hashable)
        done = self._done.get(tag)
        if isinstance(done, Exception):
            raise done
        if done is not None:
            return done
        try:
            result = await self._fetch(cert, authority)
        except OCSPFetchError as e:
            self._done[tag] = e
            raise
        self._done[tag] = result
        return result

    async def _fetch(self, cert, authority):
        urls, refused = self._s.urls("ocsp", _aia_urls(cert, "ocsp"))
        if not urls:
            raise OCSPFetchError("; ".join(refused) or "no http(s) OCSP responder URL")
        req = format_ocsp_request(cert, authority, certid_hash_algo="sha1", request_nonces=False)
        cert_id = req["tbs_request"]["request_list"][0]["req_cert"]
        serial = cert_id["serial_number"].native
        body = req.dump()
        lim = self._s.limits
        errors = list(refused)
        for url in urls:
            e = await self._s.get("ocsp", ("ocsp", url, cert_id.dump()), url, body=body,
                                  content_type="application/ocsp-request", max_bytes=lim.max_ocsp_bytes,
                                  accept="application/ocsp-response", inspect=_inspect_ocsp(serial))
            if e.data is not None:
                resp = _load_ocsp(e.data)
                key = ("ocsp", url, cert_id.dump())
                self._origin[hashlib.sha256(resp.dump()).digest()] = (url, self._s.status.get(key, "fetched"))
                return resp
            errors.append(e.error)
        raise OCSPFetchError("; ".join(errors))

    def fetched_responses(self):
        return [r for r in self._done.values() if not isinstance(r, Exception)]

    def origin_of(self, response) -> tuple[str, str] | None:
        """(URL, "fetched" | "cached") of an OCSP response this fetcher returned (asn1crypto
        or cryptography object), else None."""
        return self._origin.get(_digest(response))

    def fetched_responses_for_cert(self, cert):
        target = issuer_serial(cert)
        return [r for (iss, _), r in self._done.items() if iss == target and not isinstance(r, Exception)]


class UnicaCertificateFetcher(CertificateFetcher):
    """caIssuers: a certificate the engine was given is at depth 0, an issuer fetched for a
    certificate at depth d is at depth d + 1; nothing is fetched beyond
    ``max_ca_issuers_depth``. A loop (A -> B -> A) ends there at the latest; the per-
    validation memo means it costs one request per distinct URL."""

    def __init__(self, session: _Session):
        self._s = session
        self.log = session.log
        self._depth: dict[bytes, int] = {}
        self._certs: dict[bytes, ax.Certificate] = {}

    def fetch_cert_issuers(self, cert):
        depth = self._depth.get(cert.sha256, 0) + 1 if isinstance(cert, ax.Certificate) else 1
        return self._issuers(_aia_urls(cert, "ca_issuers"), depth)

    def fetch_crl_issuers(self, certificate_list):
        return self._issuers(list(certificate_list.issuer_cert_urls), 1)

    async def _issuers(self, candidates: list[str], depth: int):
        lim = self._s.limits
        urls, _ = self._s.urls("ca-issuers", candidates)
        if depth > lim.max_ca_issuers_depth:
            for u in urls:
                self.log.add("ca-issuers", u, "refused",
                             f"caIssuers depth limit of {lim.max_ca_issuers_depth} reached")
            return
        entries = await asyncio.gather(*(
            self._s.get("ca-issuers", ("cert", u), u, body=None, content_type=None, max_bytes=lim.max_cert_bytes,
                        accept=_CERT_TYPES, inspect=_inspect_certs(lim.max_certs_per_response))
            for u in urls))
        for e in entries:
            if e.data is None:
                continue
            for c in _unpack_certs(e.data, lim.max_certs_per_response):
                h = c.sha256
                self._depth[h] = min(self._depth.get(h, depth), depth)
                self._certs.setdefault(h, c)
                yield c

    def fetched_certs(self):
        return list(self._certs.values())


def make_fetchers(limits: FetchLimits | None = None, cache: FetchCache | None = None,
                  fetcher: Transport | None = None, *, log: FetchLog | None = None) -> Fetchers:
    """Fetchers for ONE validation (one ``ValidationContext``): the request counters and the
    log are per validation, ``cache`` (default: a private one) is shared. ``fetcher``
    replaces HTTP. The log is ``log`` (or a new one), also reachable as
    ``fetchers.crl_fetcher.log``."""
    if limits is None:
        limits = FetchLimits()
    if cache is None:
        cache = FetchCache()
    if not isinstance(limits, FetchLimits):
        raise TypeError(f"limits must be a FetchLimits, not {type(limits).__name__}")
    if not isinstance(cache, FetchCache):
        raise TypeError(f"cache must be a FetchCache, not {type(cache).__name__}")
    if fetcher is not None and not callable(fetcher):
        raise TypeError("fetcher must be callable(url, body, content_type, timeout, max_bytes) -> bytes")
    s = _Session(limits, cache, fetcher, log if log is not None else FetchLog())
    return Fetchers(ocsp_fetcher=UnicaOCSPFetcher(s), crl_fetcher=UnicaCRLFetcher(s),
                    cert_fetcher=UnicaCertificateFetcher(s))


def fetch_log(fetchers: Fetchers) -> FetchLog:
    """The log of fetchers made by :func:`make_fetchers`."""
    return fetchers.crl_fetcher.log
