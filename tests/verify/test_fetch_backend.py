"""unica.verify.fetch: the network layer of the pyhanko-certvalidator engine, against a real
HTTP server on 127.0.0.1 and the real engine (ValidationContext(fetchers=..., allow_fetching=True)).

caIssuers (DER, PEM, PKCS#7), CRLs and OCSP fetched and cached across validations, and the
bounds: size, deadline (slow drip in body and headers), redirects, schemes, request count,
caIssuers depth (a loop, an endless chain), unreachable servers, an injected fetcher."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import socket
import threading
import time
import tracemalloc
import types
from typing import NamedTuple

import pytest
from asn1crypto import x509 as ax
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID as AIA
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import InsufficientRevinfoError, PathBuildingError, PathValidationError, RevokedError

from unica.errors import FetchError
from unica.verify.fetch import FetchCache, FetchLimits, FetchLog, fetch_log, http_fetch, make_fetchers, url_allowed

from tests.verify.pki import DAY, NOW, PKI, Ident, _name, make_cert, make_crl, make_ocsp

DER = serialization.Encoding.DER
MiB = 1024 * 1024


# --- a real HTTP server ---------------------------------------------------------------------


class Hit(NamedTuple):
    method: str
    path: str
    content_type: str | None
    body: bytes


class Server:
    def __init__(self):
        self.routes: dict = {}
        self.hits: list[Hit] = []
        self.stopping = threading.Event()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *a):
                pass

            def _handle(self, method):
                body = b""
                if method == "POST":
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.hits.append(Hit(method, self.path, self.headers.get("Content-Type"), body))
                route = outer.routes.get(self.path)
                try:
                    if route is None:
                        self.send_response(404)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                    else:
                        route(self, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def count(self, path: str) -> int:
        return sum(1 for h in self.hits if h.path == path)

    def close(self):
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def static(data: bytes, ctype: str = "application/octet-stream", status: int = 200):
    def route(h, body):
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
    return route


def redirect(location: str, code: int = 302):
    def route(h, body):
        h.send_response(code)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()
    return route


def delayed(inner, seconds: float):
    def route(h, body):
        time.sleep(seconds)
        inner(h, body)
    return route


def big(n: int, *, declare: bool, server: Server):
    chunk = b"\0" * 65536

    def route(h, body):
        h.send_response(200)
        h.send_header("Content-Type", "application/pkix-crl")
        if declare:
            h.send_header("Content-Length", str(n))
        h.end_headers()
        sent = 0
        while sent < n and not server.stopping.is_set():
            h.wfile.write(chunk)
            sent += len(chunk)
    return route


def drip_body(server: Server, interval: float = 0.05):
    def route(h, body):
        h.send_response(200)
        h.send_header("Content-Type", "application/pkix-crl")
        h.end_headers()
        h.wfile.flush()
        for _ in range(2000):  # 100 s if nobody stops listening
            if server.stopping.is_set():
                return
            h.wfile.write(b"0")
            h.wfile.flush()
            time.sleep(interval)
    return route


def drip_headers(server: Server, interval: float = 0.05):
    def route(h, body):
        raw = b"HTTP/1.0 200 OK\r\nX-Slow: " + b"a" * 5000
        for i in range(len(raw)):
            if server.stopping.is_set():
                return
            h.wfile.write(raw[i:i + 1])
            h.wfile.flush()
            time.sleep(interval)
    return route


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture(scope="module")
def pki():
    return PKI()


def _a(cert) -> ax.Certificate:
    if isinstance(cert, Ident):
        cert = cert.cert
    return ax.Certificate.load(cert.public_bytes(DER))


def aia(*entries) -> tuple:
    """AIA extension for make_cert(extra=...): entries of (method OID, URL)."""
    return (x509.AuthorityInformationAccess([x509.AccessDescription(m, x509.UniformResourceIdentifier(u))
                                             for m, u in entries]), False)


def validate(leaf, roots, fx, *, others=(), mode="hard-fail"):
    """Run the real engine with our fetchers; returns (context, path) or raises its error."""
    vc = ValidationContext(trust_roots=[_a(r) for r in roots], other_certs=[_a(c) for c in others],
                           allow_fetching=True, fetchers=fx, revocation_mode=mode)
    path = asyncio.run(CertificateValidator(_a(leaf), validation_context=vc).async_validate_path())
    return vc, path


def statuses(log: FetchLog, kind: str | None = None) -> list[str]:
    return [r.status for r in log if kind is None or r.kind == kind]


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- caIssuers --------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["der", "pem", "pkcs7", "pem-pkcs7"])
def test_ca_issuers_followed_for_a_leaf_given_alone(server, pki, form):
    body = {
        "der": pki.inter.cert.public_bytes(DER),
        "pem": pki.inter.pem,
        "pkcs7": pkcs7.serialize_certificates([pki.inter.cert, pki.root.cert], DER),
        "pem-pkcs7": pkcs7.serialize_certificates([pki.inter.cert], serialization.Encoding.PEM),
    }[form]
    ctype = {"der": "application/pkix-cert", "pem": "application/x-pem-file",
             "pkcs7": "application/pkcs7-mime", "pem-pkcs7": "text/plain"}[form]
    url = f"{server.url}/inter.{form}"
    server.routes[f"/inter.{form}"] = static(body, ctype)
    leaf = pki.leaf(f"AIA {form} Ltd", ku=dict(digital_signature=True), extra=[aia((AIA.CA_ISSUERS, url))])

    # without fetching there is no path: the test below cannot pass by accident
    vc = ValidationContext(trust_roots=[_a(pki.root)], allow_fetching=False)
    with pytest.raises(PathBuildingError):
        asyncio.run(CertificateValidator(_a(leaf), validation_context=vc).async_validate_path())

    fx = make_fetchers(FetchLimits(), FetchCache())
    _, path = validate(leaf, [pki.root], fx, mode="soft-fail")
    assert [c.subject.native["common_name"] for c in path] == [
        "Unica Test Root", "Unica Test Issuing CA", f"AIA {form} Ltd seal"]
    assert list(fetch_log(fx)) == [("ca-issuers", url, "fetched", f"{len(body)} bytes")]
    assert server.count(f"/inter.{form}") == 1


def test_ca_issuers_cached_across_validations_and_garbage_refused(server, pki):
    server.routes["/i.cer"] = static(pki.inter.cert.public_bytes(DER))
    server.routes["/junk.cer"] = static(b"\x30\x03\x02\x01\x01")
    leaf = pki.leaf("AIA Cache Ltd", ku=dict(digital_signature=True),
                    extra=[aia((AIA.CA_ISSUERS, server.url + "/i.cer"))])
    cache = FetchCache()
    for _ in range(2):
        fx = make_fetchers(FetchLimits(), cache)
        validate(leaf, [pki.root], fx, mode="soft-fail")
    assert statuses(fetch_log(fx)) == ["cached"]
    assert server.count("/i.cer") == 1
    # a response that is no certificate: no issuer, no crash, the reason in the log
    bad = pki.leaf("AIA Junk Ltd", ku=dict(digital_signature=True),
                   extra=[aia((AIA.CA_ISSUERS, server.url + "/junk.cer"))])
    fx = make_fetchers(FetchLimits(), cache)
    with pytest.raises(PathBuildingError):
        validate(bad, [pki.root], fx, mode="soft-fail")
    (rec,) = fetch_log(fx)
    assert rec.status == "failed" and "not a certificate" in rec.message


def _loop_ca(subject, issuer_name, key, issuer_key, url) -> Ident:
    stub = Ident(types.SimpleNamespace(subject=issuer_name), issuer_key)
    return make_cert(subject, stub, ca=True, key=key, extra=[aia((AIA.CA_ISSUERS, url))])


def test_ca_issuers_loop_terminates(server, pki):
    ka, kb = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    na, nb = _name("Loop CA A"), _name("Loop CA B")
    a = _loop_ca(na, nb, ka, kb, server.url + "/b.cer")  # A's issuer is B ...
    b = _loop_ca(nb, na, kb, ka, server.url + "/a.cer")  # ... and B's issuer is A
    server.routes["/a.cer"] = static(a.cert.public_bytes(DER))
    server.routes["/b.cer"] = static(b.cert.public_bytes(DER))
    leaf = make_cert(_name("Loop Leaf"), a, ku=dict(digital_signature=True),
                     extra=[aia((AIA.CA_ISSUERS, server.url + "/a.cer"))])
    fx = make_fetchers(FetchLimits(), FetchCache())
    t0 = time.monotonic()
    with pytest.raises(PathBuildingError):
        validate(leaf, [pki.root], fx, mode="soft-fail")
    assert time.monotonic() - t0 < 5
    assert server.count("/a.cer") == 1 and server.count("/b.cer") == 1
    assert statuses(fetch_log(fx)) == ["fetched", "fetched"]


def test_ca_issuers_endless_chain_stops_at_depth_and_count(server, pki):
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(12)]
    names = [_name(f"Gen CA {i}") for i in range(12)]
    for i in range(11):  # Gen i is issued by Gen i+1, whose certificate is at /gen/<i+1>
        server.routes[f"/gen/{i}"] = static(_loop_ca(
            names[i], names[i + 1], keys[i], keys[i + 1], f"{server.url}/gen/{i + 1}").cert.public_bytes(DER))
    leaf = make_cert(_name("Gen Leaf"), Ident(types.SimpleNamespace(subject=names[0]), keys[0]),
                     ku=dict(digital_signature=True), extra=[aia((AIA.CA_ISSUERS, f"{server.url}/gen/0"))])

    fx = make_fetchers(FetchLimits(max_ca_issuers_depth=4), FetchCache())
    with pytest.raises(PathBuildingError):
        validate(leaf, [pki.root], fx, mode="soft-fail")
    assert [h.path for h in server.hits] == ["/gen/0", "/gen/1", "/gen/2", "/gen/3"]
    assert list(fetch_log(fx))[-1] == ("ca-issuers", f"{server.url}/gen/4", "refused",
                                       "caIssuers depth limit of 4 reached")

    server.hits.clear()
    fx = make_fetchers(FetchLimits(max_fetches=2), FetchCache())
    with pytest.raises(PathBuildingError):
        validate(leaf, [pki.root], fx, mode="soft-fail")
    assert len(server.hits) == 2
    assert list(fetch_log(fx))[-1] == ("ca-issuers", f"{server.url}/gen/2", "refused",
                                       "fetch limit of 2 requests per validation reached")


# --- CRLs -------------------------------------------------------------------------------------


def test_crl_fetched_from_cdp_and_cached(server, pki):
    url = server.url + "/inter.crl"
    server.routes["/inter.crl"] = static(make_crl(pki.inter).public_bytes(DER), "application/pkix-crl")
    leaf = pki.leaf("Crl Fetch Ltd", ku=dict(digital_signature=True), cdp=url)
    cache = FetchCache()
    fx = make_fetchers(FetchLimits(), cache)
    validate(leaf, [pki.root], fx, others=[pki.inter])
    assert statuses(fetch_log(fx)) == ["fetched"]
    (fetched,) = fx.crl_fetcher.fetched_crls()
    assert fx.crl_fetcher.origin_of(fetched) == (url, "fetched")
    fx = make_fetchers(FetchLimits(), cache)
    vc, _ = validate(leaf, [pki.root], fx, others=[pki.inter])
    assert list(fetch_log(fx))[0][:3] == ("crl", url, "cached")
    assert server.count("/inter.crl") == 1
    (used,) = vc.crls  # what the engine had: the CRL, and where it came from
    assert fx.crl_fetcher.origin_of(used) == (url, "cached")
    assert fx.crl_fetcher.origin_of(make_crl(pki.inter)) is None
    assert fx.crl_fetcher.origin_of(x509.load_der_x509_crl(used.dump())) == (url, "cached")
    # a fresh cache asks again: the cache is what saved the request
    validate(leaf, [pki.root], make_fetchers(FetchLimits(), FetchCache()), others=[pki.inter])
    assert server.count("/inter.crl") == 2

    # the fetched CRL is really used: a certificate on it is revoked
    victim = pki.leaf("Crl Victim Ltd", ku=dict(digital_signature=True), cdp=server.url + "/r.crl")
    server.routes["/r.crl"] = static(make_crl(pki.inter, [(victim.cert.serial_number, NOW - DAY)]).public_bytes(
        serialization.Encoding.PEM))  # PEM is accepted too
    with pytest.raises(RevokedError):
        validate(victim, [pki.root], make_fetchers(FetchLimits(), cache), others=[pki.inter])


def test_crl_cache_lifetime_next_update_and_cap(server, pki):
    now = dt.datetime.now(dt.timezone.utc)
    server.routes["/soon.crl"] = static(make_crl(pki.inter, this_update=now - dt.timedelta(hours=1),
                                                 next_update=now + dt.timedelta(seconds=2)).public_bytes(DER))
    leaf = pki.leaf("Crl Soon Ltd", ku=dict(digital_signature=True), cdp=server.url + "/soon.crl")
    cache = FetchCache()
    validate(leaf, [pki.root], make_fetchers(FetchLimits(), cache), others=[pki.inter])
    validate(leaf, [pki.root], make_fetchers(FetchLimits(), cache), others=[pki.inter])
    assert server.count("/soon.crl") == 1
    time.sleep(max(0.0, (now + dt.timedelta(seconds=2.2) - dt.datetime.now(dt.timezone.utc)).total_seconds()))
    try:  # past its nextUpdate: fetched anew (whatever the engine then makes of it)
        validate(leaf, [pki.root], make_fetchers(FetchLimits(), cache), others=[pki.inter])
    except PathValidationError:
        pass
    assert server.count("/soon.crl") == 2

    # a week-long CRL is kept no longer than revinfo_ttl
    server.routes["/week.crl"] = static(make_crl(pki.inter).public_bytes(DER))
    leaf = pki.leaf("Crl Week Ltd", ku=dict(digital_signature=True), cdp=server.url + "/week.crl")
    cache = FetchCache(revinfo_ttl=0.3)
    validate(leaf, [pki.root], make_fetchers(FetchLimits(), cache), others=[pki.inter])
    validate(leaf, [pki.root], make_fetchers(FetchLimits(), cache), others=[pki.inter])
    assert server.count("/week.crl") == 1
    time.sleep(0.4)
    validate(leaf, [pki.root], make_fetchers(FetchLimits(), cache), others=[pki.inter])
    assert server.count("/week.crl") == 2


def test_failures_cached_briefly(server, pki):
    leaf = pki.leaf("Crl 404 Ltd", ku=dict(digital_signature=True), cdp=server.url + "/missing.crl")
    cache = FetchCache(negative_ttl=0.3)
    fx = make_fetchers(FetchLimits(), cache)
    with pytest.raises(InsufficientRevinfoError):
        validate(leaf, [pki.root], fx, others=[pki.inter])
    assert list(fetch_log(fx)) == [("crl", server.url + "/missing.crl", "failed",
                                    f"{server.url}/missing.crl: HTTP 404 Not Found")]
    fx = make_fetchers(FetchLimits(), cache)
    with pytest.raises(InsufficientRevinfoError):
        validate(leaf, [pki.root], fx, others=[pki.inter])
    assert fetch_log(fx).records[0].message.startswith("cached failure: ")
    assert server.count("/missing.crl") == 1
    time.sleep(0.4)
    with pytest.raises(InsufficientRevinfoError):
        validate(leaf, [pki.root], make_fetchers(FetchLimits(), cache), others=[pki.inter])
    assert server.count("/missing.crl") == 2


def test_shared_cache_one_request_for_concurrent_validations(server, pki):
    server.routes["/slow.crl"] = delayed(static(make_crl(pki.inter).public_bytes(DER)), 0.5)
    leaf = pki.leaf("Crl Herd Ltd", ku=dict(digital_signature=True), cdp=server.url + "/slow.crl")
    cache = FetchCache()
    logs, errors = [], []

    def one():
        fx = make_fetchers(FetchLimits(), cache)
        try:
            validate(leaf, [pki.root], fx, others=[pki.inter])
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        logs.append(fetch_log(fx))

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and len(logs) == 6
    assert server.count("/slow.crl") == 1
    assert sorted(statuses(log)[0] for log in logs) == ["cached"] * 5 + ["fetched"]


# --- OCSP -------------------------------------------------------------------------------------


def test_ocsp_fetched_by_post_and_cached(server, pki):
    leaf = pki.leaf("Ocsp Post Ltd", ku=dict(digital_signature=True), ocsp_url=server.url + "/ocsp")
    victim = pki.leaf("Ocsp Victim Ltd", ku=dict(digital_signature=True), ocsp_url=server.url + "/ocsp")

    def responder(h, body):
        req = ocsp.load_der_ocsp_request(body)
        cert = {leaf.cert.serial_number: leaf.cert, victim.cert.serial_number: victim.cert}[req.serial_number]
        kw = dict(status="revoked", revoked_at=NOW - DAY) if cert is victim.cert else {}
        static(make_ocsp(cert, pki.inter, **kw), "application/ocsp-response")(h, body)

    server.routes["/ocsp"] = responder
    cache = FetchCache()
    fx = make_fetchers(FetchLimits(), cache)
    validate(leaf, [pki.root], fx, others=[pki.inter])
    (hit,) = server.hits
    assert hit.method == "POST" and hit.content_type == "application/ocsp-request"
    assert ocsp.load_der_ocsp_request(hit.body).serial_number == leaf.cert.serial_number
    assert statuses(fetch_log(fx)) == ["fetched"]
    fx = make_fetchers(FetchLimits(), cache)
    vc, _ = validate(leaf, [pki.root], fx, others=[pki.inter])
    assert statuses(fetch_log(fx)) == ["cached"] and len(server.hits) == 1
    (resp,) = vc.ocsps
    assert fx.ocsp_fetcher.origin_of(resp) == (server.url + "/ocsp", "cached")
    # keyed by the certificate: another certificate of the same responder is asked for
    with pytest.raises(RevokedError):
        validate(victim, [pki.root], make_fetchers(FetchLimits(), cache), others=[pki.inter])
    assert len(server.hits) == 2


def test_ocsp_error_status_is_missing_data_and_request_budget(server, pki):
    unauthorized = b"\x30\x03\x0a\x01\x06"  # OCSPResponse { responseStatus unauthorized(6) }
    server.routes["/ocsp"] = static(unauthorized, "application/ocsp-response")
    server.routes["/ok.crl"] = static(make_crl(pki.inter).public_bytes(DER))
    leaf = pki.leaf("Ocsp Unauth Ltd", ku=dict(digital_signature=True), ocsp_url=server.url + "/ocsp",
                    cdp=server.url + "/ok.crl")
    # OCSP says "unauthorized": the CRL is asked instead, and the path validates
    fx = make_fetchers(FetchLimits(), FetchCache())
    validate(leaf, [pki.root], fx, others=[pki.inter])
    assert [(r.kind, r.status) for r in fetch_log(fx)] == [("ocsp", "failed"), ("crl", "fetched")]
    assert "'unauthorized'" in fetch_log(fx).records[0].message
    # with one request allowed, the CRL is not fetched: hard-fail has no data
    server.hits.clear()
    fx = make_fetchers(FetchLimits(max_fetches=1), FetchCache())
    with pytest.raises(InsufficientRevinfoError):
        validate(leaf, [pki.root], fx, others=[pki.inter])
    assert [h.path for h in server.hits] == ["/ocsp"]
    assert list(fetch_log(fx))[-1] == ("crl", server.url + "/ok.crl", "refused",
                                       "fetch limit of 1 requests per validation reached")


# --- bounds -----------------------------------------------------------------------------------


def test_size_limit_refused_early_and_memory_bounded(server, pki):
    server.routes["/declared"] = big(20 * MiB, declare=True, server=server)
    server.routes["/undeclared"] = big(20 * MiB, declare=False, server=server)
    tracemalloc.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(FetchError, match=r"larger than 1048576 bytes \(Content-Length 20971520\)"):
            http_fetch(server.url + "/declared", timeout=5, max_bytes=MiB)
        with pytest.raises(FetchError, match="larger than 1048576 bytes$"):
            http_fetch(server.url + "/undeclared", timeout=5, max_bytes=MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - t0 < 4
    assert peak < 4 * MiB, peak  # the 20 MiB are never held
    assert http_fetch(server.url + "/declared", timeout=5, max_bytes=21 * MiB)[:4] == b"\0\0\0\0"

    # through the engine: a 20 MiB CRL against the default 16 MiB
    leaf = pki.leaf("Crl Huge Ltd", ku=dict(digital_signature=True), cdp=server.url + "/declared")
    fx = make_fetchers(FetchLimits(), FetchCache())
    with pytest.raises(InsufficientRevinfoError):
        validate(leaf, [pki.root], fx, others=[pki.inter])
    (rec,) = fetch_log(fx)
    assert rec.status == "failed" and "larger than 16777216 bytes" in rec.message


def test_slow_drip_hits_the_deadline(server, pki):
    server.routes["/drip-body"] = drip_body(server)
    server.routes["/drip-headers"] = drip_headers(server)
    for path in ("/drip-body", "/drip-headers"):
        t0 = time.monotonic()
        with pytest.raises(FetchError, match="took longer than 1 s"):
            http_fetch(server.url + path, timeout=1, max_bytes=MiB)
        assert time.monotonic() - t0 < 2, path
    leaf = pki.leaf("Crl Drip Ltd", ku=dict(digital_signature=True), cdp=server.url + "/drip-body")
    fx = make_fetchers(FetchLimits(timeout=1), FetchCache())
    t0 = time.monotonic()
    with pytest.raises(InsufficientRevinfoError):
        validate(leaf, [pki.root], fx, others=[pki.inter])
    assert time.monotonic() - t0 < 3
    assert statuses(fetch_log(fx)) == ["failed"] and "longer than 1 s" in fetch_log(fx).records[0].message


def test_redirects_bounded(server, pki):
    server.routes["/loop/a"] = redirect("/loop/b")
    server.routes["/loop/b"] = redirect(server.url + "/loop/a", 301)
    with pytest.raises(FetchError, match="more than 3 redirects"):
        http_fetch(server.url + "/loop/a", timeout=5, max_bytes=MiB)
    assert len(server.hits) == 4  # the request and 3 redirects, then no more

    # three are followed, a fourth is not
    server.routes["/r3"] = redirect("/r2", 307)
    server.routes["/r2"] = redirect("/r1", 308)
    server.routes["/r1"] = redirect("/data", 303)
    server.routes["/r4"] = redirect("/r3")
    server.routes["/data"] = static(b"payload")
    assert http_fetch(server.url + "/r3", timeout=5, max_bytes=MiB) == b"payload"
    with pytest.raises(FetchError, match="more than 3 redirects"):
        http_fetch(server.url + "/r4", timeout=5, max_bytes=MiB)
    assert http_fetch(server.url + "/r4", timeout=5, max_bytes=MiB, max_redirects=4) == b"payload"

    # never to another scheme
    server.routes["/to-file"] = redirect("file:///etc/passwd")
    server.routes["/to-ftp"] = redirect("ftp://127.0.0.1/x.crl")
    for path in ("/to-file", "/to-ftp"):
        with pytest.raises(FetchError, match="only http and https"):
            http_fetch(server.url + path, timeout=5, max_bytes=MiB)

    # a POST keeps its body across 307, and is not turned into a GET by 302
    server.routes["/ocsp-moved"] = redirect("/ocsp-here", 307)
    server.routes["/ocsp-302"] = redirect("/ocsp-here", 302)
    server.routes["/ocsp-here"] = lambda h, body: static(b"echo:" + body)(h, body)
    assert http_fetch(server.url + "/ocsp-moved", body=b"req", content_type="application/ocsp-request",
                      timeout=5, max_bytes=MiB) == b"echo:req"
    assert server.hits[-1].method == "POST" and server.hits[-1].content_type == "application/ocsp-request"
    with pytest.raises(FetchError, match="would turn the POST into a GET"):
        http_fetch(server.url + "/ocsp-302", body=b"req", timeout=5, max_bytes=MiB)

    # through the engine: a CDP that redirects forever is a failed fetch
    leaf = pki.leaf("Crl Loop Ltd", ku=dict(digital_signature=True), cdp=server.url + "/loop/a")
    fx = make_fetchers(FetchLimits(), FetchCache())
    with pytest.raises(InsufficientRevinfoError):
        validate(leaf, [pki.root], fx, others=[pki.inter])
    assert "more than 3 redirects" in fetch_log(fx).records[0].message


def test_non_http_urls_are_not_fetched(server, pki):
    calls = []

    def fetcher(url, body, content_type, timeout, max_bytes):
        calls.append(url)
        raise AssertionError("must not be called")

    leaf = pki.leaf("Ldap Ltd", ku=dict(digital_signature=True), cdp="file:///etc/passwd",
                    extra=[aia((AIA.OCSP, f"ftp://127.0.0.1:{closed_port()}/ocsp"),
                               (AIA.CA_ISSUERS, "ldap://ldap.example/cn=CA?cACertificate"))])
    fx = make_fetchers(FetchLimits(), FetchCache(), fetcher)
    with pytest.raises(InsufficientRevinfoError):
        validate(leaf, [pki.root], fx, others=[pki.inter])
    assert calls == []
    # (the engine itself skips a certificate whose OCSP URLs are all non-http, so only the CRL shows)
    assert list(fetch_log(fx)) == [("crl", "file:///etc/passwd", "refused",
                                    "file:///etc/passwd: only http and https URLs are fetched")]
    fx = make_fetchers(FetchLimits(), FetchCache(), fetcher)
    with pytest.raises(PathBuildingError):  # given alone: the ldap caIssuers is not followed
        validate(leaf, [pki.root], fx, mode="soft-fail")
    assert list(fetch_log(fx)) == [("ca-issuers", "ldap://ldap.example/cn=CA?cACertificate", "refused",
                                    "ldap://ldap.example/cn=CA?cACertificate: only http and https URLs are fetched")]
    assert calls == []
    for bad in ("file:///etc/passwd", "ftp://h/x", "gopher://h/", "http:///nohost", "http://h/a b",
                "http://h/\u00e9", "http://h:99999/", "HTTPX://h/"):
        assert not url_allowed(bad), bad
        with pytest.raises(FetchError):
            http_fetch(bad, timeout=1, max_bytes=10)
    assert url_allowed("HTTP://h/x.crl") and url_allowed("https://h:8443/x")


def test_unreachable_server_is_missing_data(pki):
    url = f"http://127.0.0.1:{closed_port()}/none.crl"
    leaf = pki.leaf("Crl Dead Ltd", ku=dict(digital_signature=True), cdp=url)
    fx = make_fetchers(FetchLimits(timeout=2), FetchCache())
    with pytest.raises(InsufficientRevinfoError):
        validate(leaf, [pki.root], fx, others=[pki.inter])
    (rec,) = fetch_log(fx)
    assert rec[:3] == ("crl", url, "failed") and "fetch failed" in rec.message
    vc, path = validate(leaf, [pki.root], make_fetchers(FetchLimits(timeout=2), FetchCache()),
                        others=[pki.inter], mode="soft-fail")
    assert len(path) == 3 and any(url in str(e) for e in vc.soft_fail_exceptions)


def test_injected_fetcher_replaces_http(pki):
    crl_url, ocsp_url = "http://crl.invalid/ca.crl", "http://ocsp.invalid/"
    leaf = pki.leaf("Injected Ltd", ku=dict(digital_signature=True), cdp=crl_url, ocsp_url=ocsp_url)
    calls = []

    def fetcher(url, body, content_type, timeout, max_bytes):
        calls.append((url, body is not None, content_type, timeout, max_bytes))
        if url == ocsp_url:
            raise OSError("responder down")  # any exception is a failed fetch
        return make_crl(pki.inter).public_bytes(DER)

    fx = make_fetchers(FetchLimits(timeout=3), FetchCache(), fetcher)
    validate(leaf, [pki.root], fx, others=[pki.inter])
    assert calls == [(ocsp_url, True, "application/ocsp-request", 3, MiB),
                     (crl_url, False, None, 3, 16 * MiB)]
    assert [(r.kind, r.status) for r in fetch_log(fx)] == [("ocsp", "failed"), ("crl", "fetched")]
    assert "OSError: responder down" in fetch_log(fx).records[0].message

    # a fetcher returning more than it was allowed is refused all the same
    fx = make_fetchers(FetchLimits(max_crl_bytes=100), FetchCache(), lambda *a: b"\0" * 101)
    with pytest.raises(InsufficientRevinfoError):
        validate(pki.leaf("Injected Big Ltd", ku=dict(digital_signature=True), cdp=crl_url),
                 [pki.root], fx, others=[pki.inter])
    assert "larger than 100 bytes" in fetch_log(fx).records[0].message


def test_limits_and_arguments_checked():
    for bad in (dict(timeout=0), dict(timeout=-1), dict(max_crl_bytes=0), dict(max_fetches=-1),
                dict(max_redirects=-1), dict(max_fetches=1.5), dict(timeout="5"), dict(max_cert_bytes=True)):
        with pytest.raises(ValueError):
            FetchLimits(**bad)
    assert FetchLimits(max_redirects=0, max_fetches=0).max_fetches == 0
    with pytest.raises(ValueError):
        FetchCache(max_entries=0)
    with pytest.raises(TypeError):
        make_fetchers({"timeout": 5}, FetchCache())
    with pytest.raises(TypeError):
        make_fetchers(FetchLimits(), {})
    log = FetchLog()
    fx = make_fetchers(log=log)
    assert fetch_log(fx) is log and fx.ocsp_fetcher.log is log


def test_cache_bounded_by_entries_and_bytes(server, pki):
    for i in range(3):
        server.routes[f"/c{i}.crl"] = static(make_crl(pki.inter, number=i + 1).public_bytes(DER))
    leaves = [pki.leaf(f"Crl Evict {i} Ltd", ku=dict(digital_signature=True), cdp=f"{server.url}/c{i}.crl")
              for i in range(3)]
    cache = FetchCache(max_entries=2)
    for leaf in leaves + leaves[2:]:
        validate(leaf, [pki.root], make_fetchers(FetchLimits(), cache), others=[pki.inter])
    assert len(cache) == 2 and [server.count(f"/c{i}.crl") for i in range(3)] == [1, 1, 1]
    validate(leaves[0], [pki.root], make_fetchers(FetchLimits(), cache), others=[pki.inter])
    assert server.count("/c0.crl") == 2  # the least recently used went first
    cache = FetchCache(max_bytes=64)  # nothing fits: every validation asks
    for _ in range(2):
        validate(leaves[1], [pki.root], make_fetchers(FetchLimits(), cache), others=[pki.inter])
    assert server.count("/c1.crl") == 3 and len(cache) == 0 and cache.nbytes == 0


def test_https_verified_and_bounded(tmp_path, pki, monkeypatch):
    import ipaddress
    import ssl

    import unica.verify.fetch as fetch_mod
    from cryptography.x509.oid import ExtendedKeyUsageOID

    tls = pki.leaf("Tls Ltd", ku=dict(digital_signature=True), eku=[ExtendedKeyUsageOID.SERVER_AUTH],
                   extra=[(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)])
    (tmp_path / "chain.pem").write_bytes(tls.pem + pki.inter.pem)
    (tmp_path / "key.pem").write_bytes(tls.key_pem)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    srv = Server()
    srv.httpd.socket = sctx.wrap_socket(srv.httpd.socket, server_side=True)
    url = srv.url.replace("http://", "https://")
    stall = socket.socket()  # accepts TCP connections, never answers the TLS handshake
    stall.bind(("127.0.0.1", 0))
    stall.listen(5)
    try:
        srv.routes["/x.crl"] = static(b"over tls")
        # the system's trust store does not know the test root: refused
        with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED"):
            http_fetch(url + "/x.crl", timeout=5, max_bytes=MiB)
        monkeypatch.setattr(fetch_mod, "_TLS", ssl.create_default_context(cadata=pki.root.pem.decode()))
        assert http_fetch(url + "/x.crl", timeout=5, max_bytes=MiB) == b"over tls"
        # a TLS handshake that never completes is bounded by the same deadline
        t0 = time.monotonic()
        with pytest.raises(FetchError, match="took longer than 1 s"):
            http_fetch(f"https://127.0.0.1:{stall.getsockname()[1]}/x.crl", timeout=1, max_bytes=MiB)
        assert time.monotonic() - t0 < 2
        # and the drip over TLS too
        srv.routes["/drip"] = drip_body(srv)
        t0 = time.monotonic()
        with pytest.raises(FetchError, match="took longer than 1 s"):
            http_fetch(url + "/drip", timeout=1, max_bytes=MiB)
        assert time.monotonic() - t0 < 2
    finally:
        stall.close()
        srv.close()
