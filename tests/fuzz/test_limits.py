"""The limits that keep one input from exhausting memory or time, checked directly.

- OCSP: request body (413 before reading more, with or without Content-Length), GET path
  (414), the parser's own limit; CSR size; key URI length.
- unica.verify: certificate chain length (a chain longer than the depth limit is refused,
  quickly) and the work on many candidate intermediates (bounded);
- revocation fetch size (``max_bytes``, with and without Content-Length) and fetch time
  (``timeout``) against a real HTTP server on 127.0.0.1 that sends too much, or drips.
"""

from __future__ import annotations

import datetime as dt
import http.server
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fuzz.conftest import NOW, Ident, _cert, _name
from tests.fuzz.harness import Hang, time_guard
from unica.errors import FetchError, MalformedInput, URIError


# --- request sizes ----------------------------------------------------------------------------


def test_ocsp_limits(seeds):
    from tests.fuzz.test_fuzz_ocsp import LIMITS, PREFIX, call_app
    from unica.ocsp import InMemoryStatusSource, Responder, ResponseSigner, ServedCA
    from unica.ocsp.http import OCSPApp
    from unica.ocsp.request import MalformedRequest, RequestLimits, parse_request
    import asyncio

    with pytest.raises(ValueError):
        RequestLimits(max_body=10)
    with pytest.raises(MalformedRequest, match="over the limit"):
        parse_request(b"\x30" * 9000)  # default limit 8192
    signer = ResponseSigner(seeds.inter.cert, seeds.ocsp_signer.cert, seeds.ocsp_signer.key)
    app = OCSPApp(Responder([ServedCA("i", seeds.inter.cert, "live", signer)], InMemoryStatusSource(),
                            limits=LIMITS), prefix=PREFIX)
    loop = asyncio.new_event_loop()
    try:
        big = b"\x30" * (LIMITS.max_body + 1)
        # declared too large: 413 without reading the body at all
        status, hdrs, _ = call_app(app, loop, "POST", PREFIX.encode(), [(b"content-length", b"%d" % len(big))], [])
        assert status == 413 and hdrs[b"connection"] == b"close"
        # no Content-Length (chunked): 413 as soon as the limit is passed
        status, _, _ = call_app(app, loop, "POST", PREFIX.encode(), [], [big[:1000], big[1000:], b"x" * 10**6])
        assert status == 413
        status, _, _ = call_app(app, loop, "GET", (PREFIX + "A" * (4 * LIMITS.max_body + 1)).encode(), [], [])
        assert status == 414
    finally:
        loop.close()


def test_csr_and_uri_limits(seeds):
    from unica.ca.request import MAX_CSR_BYTES, parse_csr
    from unica.hsm.uri import parse_key_uri

    with pytest.raises(MalformedInput, match="too large"):
        parse_csr(seeds.csrs[0] + b"\x00" * MAX_CSR_BYTES, "big.csr")
    with pytest.raises(URIError, match="too long"):
        parse_key_uri("pkcs11:object=" + "a" * 5000)


# --- chain length and path-building work ------------------------------------------------------


def _chain(depth: int) -> tuple[Ident, list[Ident], Ident]:
    root = _cert(_name("Depth Root"), ec.generate_private_key(ec.SECP256R1()), None, ca=True)
    cas, parent = [], root
    for i in range(depth):
        k = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(_name(f"Depth CA {i}")).issuer_name(parent.cert.subject)
             .public_key(k.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(k.public_key()), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()),
                            critical=False))
        parent = Ident(k, b.sign(parent.key, hashes.SHA256()))
        cas.append(parent)
    leaf = _cert(_name("Depth Leaf", "Depth Org"), ec.generate_private_key(ec.SECP256R1()), parent, ca=False)
    return root, cas, leaf


def test_chain_length_limit():
    """The depth limit exists and holds: a 5-CA chain passes, but not under max_chain_depth=3;
    a 12-CA chain is refused (default limit), quickly."""
    from unica.verify import OFF, Indication, validate_certificate

    t0 = time.monotonic()
    root, cas, leaf = _chain(5)
    with time_guard(10):
        ok = validate_certificate(leaf.der, trust=[root.der], intermediates=[c.der for c in cas], revocation=OFF)
        short = validate_certificate(leaf.der, trust=[root.der], intermediates=[c.der for c in cas], revocation=OFF,
                                     max_chain_depth=3)
    assert ok.indication is Indication.TOTAL_PASSED, ok
    assert short.indication is not Indication.TOTAL_PASSED
    root, cas, leaf = _chain(12)
    with time_guard(10):
        rep = validate_certificate(leaf.der, trust=[root.der], intermediates=[c.der for c in cas], revocation=OFF)
    assert rep.indication is not Indication.TOTAL_PASSED, "a 12-CA chain passed under the default depth limit"
    assert time.monotonic() - t0 < 10


def test_many_candidate_intermediates_bounded():
    """300 intermediates sharing one subject name (only one of them the real issuer) and a
    mesh of cross-certificates: path building stays bounded."""
    from unica.verify import OFF, validate_certificate

    root, cas, leaf = _chain(2)
    decoys = []
    for i in range(300):
        k = ec.generate_private_key(ec.SECP256R1())
        issuer = cas[0] if i % 2 else root
        decoys.append(_cert(cas[-1].cert.subject, k, issuer, ca=True).der)
    t0 = time.monotonic()
    with time_guard(20):
        rep = validate_certificate(leaf.der, trust=[root.der], intermediates=decoys + [c.der for c in cas],
                                   revocation=OFF)
    took = time.monotonic() - t0
    assert took < 20
    print(f"300 decoy intermediates: {rep.indication.value} in {took:.2f} s")


# --- revocation fetch size and time -----------------------------------------------------------


class _Evil:
    """A real HTTP server on 127.0.0.1: /big sends too much (with Content-Length), /stream
    too much without it, /drip one byte every ``drip`` seconds."""

    def __init__(self, size: int, drip: float, drip_bytes: int):
        outer = self
        self.stop = threading.Event()

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *a):
                pass

            def do_GET(self):
                self.send_response(200)
                if self.path == "/big":
                    self.send_header("Content-Length", str(size))
                    self.end_headers()
                    self.wfile.write(b"\x30" * size)
                elif self.path == "/stream":
                    self.end_headers()
                    for i in range(0, size, 4096):
                        self.wfile.write(b"\x30" * min(4096, size - i))
                else:  # /drip
                    self.send_header("Content-Length", str(drip_bytes))
                    self.end_headers()
                    for _ in range(drip_bytes):
                        if outer.stop.wait(drip):
                            return
                        try:
                            self.wfile.write(b"\x30")
                            self.wfile.flush()
                        except OSError:
                            return

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.stop.set()
        self.httpd.shutdown()


@pytest.fixture
def evil():
    s = _Evil(size=300_000, drip=0.25, drip_bytes=40)
    yield s
    s.close()


def test_fetch_size_limit(evil):
    from unica.verify.fetch import http_fetch

    for path in ("/big", "/stream"):
        with time_guard(10):
            with pytest.raises(FetchError, match="larger than"):
                http_fetch(evil.url + path, timeout=5, max_bytes=100_000)
        assert len(http_fetch(evil.url + path, timeout=5, max_bytes=400_000)) == 300_000


def test_fetch_time_limit(evil):
    """``timeout`` must bound the whole fetch: a server that sends one byte every 0.25 s
    (40 bytes: 10 s) must not hold a 1-second fetch for 10 s."""
    from unica.verify.fetch import http_fetch

    t0 = time.monotonic()
    try:
        with time_guard(15):
            http_fetch(evil.url + "/drip", timeout=1.0, max_bytes=1000)
    except FetchError:
        pass
    took = time.monotonic() - t0
    assert took < 3.0, f"a 1 s revocation fetch took {took:.1f} s against a dripping server"


def test_time_guard_catches_a_hang():
    """The per-input guard the fuzz tests rely on does fail a runaway parser."""
    def spin():
        while True:
            pass

    t0 = time.monotonic()
    with pytest.raises(Hang):
        with time_guard(0.3):
            spin()
    assert time.monotonic() - t0 < 2
