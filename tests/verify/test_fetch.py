"""Revocation data fetched over HTTP (a real server on 127.0.0.1): CRL distribution points,
OCSP from AIA, the bounded cache, size limits and unreachable servers."""

from __future__ import annotations

import http.server
import threading

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp

from unica.verify import SOFT_FAIL, RevocationPolicy, SubIndication, Verifier

from tests.verify.pki import DAY, NOW, PKI, make_crl, make_ocsp


class _Server:
    def __init__(self):
        self.routes: dict[str, bytes] = {}
        self.hits: list[str] = []
        self.ocsp = None  # callable(request DER) -> response DER
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.hits.append(self.path)
                body = outer.routes.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write(body or b"")

            def do_POST(self):
                outer.hits.append("POST " + self.path)
                req = self.rfile.read(int(self.headers["Content-Length"]))
                body = outer.ocsp(req)
                self.send_response(200)
                self.send_header("Content-Type", "application/ocsp-response")
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def test_crl_fetched_and_cached(server):
    pki = PKI()
    leaf = pki.leaf("Fetch Ltd", ku=dict(digital_signature=True), cdp=server.url + "/inter.crl")
    server.routes["/inter.crl"] = make_crl(pki.inter).public_bytes(serialization.Encoding.DER)
    v = Verifier([pki.root.cert], intermediates=[pki.inter.cert],
                 revocation=RevocationPolicy(mode="hard-fail", check_ca=False))
    rep = v.validate_certificate(leaf.cert)
    assert rep.passed, rep.messages
    assert rep.revocation[0].origin == f"fetched: {server.url}/inter.crl"
    v.validate_certificate(leaf.cert, at=NOW + DAY)  # another time bucket: path revalidated
    assert server.hits.count("/inter.crl") == 1  # the CRL came from the cache
    # a revoked certificate on a freshly fetched CRL
    victim = pki.leaf("Fetch Revoked Ltd", ku=dict(digital_signature=True), cdp=server.url + "/r.crl")
    server.routes["/r.crl"] = make_crl(pki.inter, [(victim.cert.serial_number, NOW - DAY)]).public_bytes(
        serialization.Encoding.DER)
    assert v.validate_certificate(victim.cert).sub_indication is SubIndication.REVOKED


def test_ocsp_fetched(server):
    pki = PKI()
    leaf = pki.leaf("Ocsp Fetch Ltd", ku=dict(digital_signature=True), ocsp_url=server.url + "/ocsp")

    def answer(req_der):
        req = ocsp.load_der_ocsp_request(req_der)
        assert req.serial_number == leaf.cert.serial_number
        return make_ocsp(leaf.cert, pki.inter, pki.responder)

    server.ocsp = answer
    v = Verifier([pki.root.cert], intermediates=[pki.inter.cert],
                 revocation=RevocationPolicy(mode="hard-fail", check_ca=False))
    rep = v.validate_certificate(leaf.cert)
    assert rep.passed, rep.messages
    assert rep.revocation[0].source == "OCSP" and rep.revocation[0].origin.startswith("fetched")
    v.validate_certificate(leaf.cert, at=NOW + DAY)
    assert server.hits.count("POST /ocsp") == 1


def test_fetch_limits_and_failures(server):
    pki = PKI()
    leaf = pki.leaf("Big Crl Ltd", ku=dict(digital_signature=True), cdp=server.url + "/big.crl")
    server.routes["/big.crl"] = make_crl(pki.inter).public_bytes(serialization.Encoding.DER)
    small = RevocationPolicy(mode="hard-fail", check_ca=False, max_bytes=100)
    rep = Verifier([pki.root.cert], intermediates=[pki.inter.cert], revocation=small).validate_certificate(leaf.cert)
    assert rep.sub_indication is SubIndication.TRY_LATER
    assert "larger than 100 bytes" in rep.revocation[0].message
    # unreachable server: hard-fail -> TRY_LATER, soft-fail -> passes with a message
    dead = pki.leaf("Dead Ltd", ku=dict(digital_signature=True), cdp="http://127.0.0.1:9/none.crl")
    rep = Verifier([pki.root.cert], intermediates=[pki.inter.cert],
                   revocation=RevocationPolicy(mode="hard-fail", check_ca=False, timeout=2)).validate_certificate(dead.cert)
    assert rep.sub_indication is SubIndication.TRY_LATER
    rep = Verifier([pki.root.cert], intermediates=[pki.inter.cert], revocation=SOFT_FAIL).validate_certificate(dead.cert)
    assert rep.passed and any("soft-fail" in m for m in rep.messages)


def test_offline_policy_does_not_fetch(server):
    pki = PKI()
    leaf = pki.leaf("Offline Ltd", ku=dict(digital_signature=True), cdp=server.url + "/x.crl")
    server.routes["/x.crl"] = make_crl(pki.inter).public_bytes(serialization.Encoding.DER)
    rep = Verifier([pki.root.cert], intermediates=[pki.inter.cert],
                   revocation=RevocationPolicy(mode="hard-fail", fetch=False)).validate_certificate(leaf.cert)
    assert rep.sub_indication is SubIndication.TRY_LATER and server.hits == []


def test_library_does_not_import_ca_or_store():
    import subprocess
    import sys

    code = ("import sys, unica.verify, unica.verify.cms, unica.verify.pdf;"
            "bad=[m for m in sys.modules if m.startswith(('unica.store','unica.ca'))];"
            "print(bad); sys.exit(1 if bad else 0)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_leaf_alone_follows_aia_ca_issuers(server):
    """Issue #10 finding 10: the issuing CA is fetched from the leaf's caIssuers URL (bounded,
    cached); offline, the same input has no chain."""
    from cryptography import x509

    pki = PKI()
    aia = x509.AuthorityInformationAccess([x509.AccessDescription(
        x509.AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(server.url + "/ica.cer"))])
    leaf = pki.leaf("Aia Ltd", ku=dict(digital_signature=True), cdp=server.url + "/inter.crl", extra=[(aia, False)])
    server.routes["/ica.cer"] = pki.inter.cert.public_bytes(serialization.Encoding.DER)
    server.routes["/inter.crl"] = make_crl(pki.inter).public_bytes(serialization.Encoding.DER)
    pol = RevocationPolicy(mode="hard-fail", check_ca=False)
    v = Verifier([pki.root.cert], revocation=pol)
    rep = v.validate_certificate(leaf.cert)
    assert rep.passed, rep.messages
    assert [c.subject for c in rep.path][1] == pki.inter.cert.subject.rfc4514_string()
    v.validate_certificate(leaf.cert, at=NOW + DAY)
    assert server.hits.count("/ica.cer") == 1  # cached
    offline = Verifier([pki.root.cert], revocation=RevocationPolicy(mode="hard-fail", fetch=False, check_ca=False))
    assert offline.validate_certificate(leaf.cert).sub_indication is SubIndication.NO_CERTIFICATE_CHAIN_FOUND
