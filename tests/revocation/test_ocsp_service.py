"""The OCSP responder service over the database, queried with the real `openssl ocsp` client."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from tests.conftest import assert_one_line_error


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, pki, *args):
        self.port = _free_port()
        env = dict(os.environ)
        env.update({k: v for k, v in pki.env.items() if v is not None})
        env.pop("UNICA_DB", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "unica", "ocsp", "serve", "--port", str(self.port), *args],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{self.port}/"
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("responder exited: " + self.proc.stderr.read())
            try:
                with urllib.request.urlopen(self.url + "healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("responder did not come up")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def presigned_pki(module_pki):
    """The issuing CA with a delegated OCSP signer and pre-signed responses (shared by the module;
    tests use certificates of their own, and the one that switches to live mode runs last)."""
    pki = module_pki
    pki.run("ocsp", "signer", "--ca", "sub")
    pki.issued = [pki.issue("sub") for _ in range(5)]
    pki.run("ocsp", "configure", "--ca", "sub", "--mode", "presigned", "--validity", "4d")
    r = pki.run("ocsp", "presign", "--json")
    assert json.loads(r.stdout) == [{"ca": "sub", "signed": 6, "skipped": False}]  # 5 certs + the signer's
    return pki


@pytest.fixture
def served(presigned_pki):
    """... and responders started by the test, stopped after it."""
    pki = presigned_pki
    servers = []

    def start(*args):
        s = Server(pki, *args)
        servers.append(s)
        return s

    pki.start_server = start
    yield pki
    for s in servers:
        s.stop()


def _pem(pki, serial: str):
    path = pki.tmp / f"{serial}.pem"
    if not path.exists():
        path.write_text(pki.run("cert", "export", serial).stdout)
    return path


def _ca_pem(pki, name: str):
    path = pki.tmp / f"{name}.pem"
    return path if path.exists() else pki.export(name)


def openssl_ocsp(pki, server, *args, cert=None, issuer="sub", nonce=False):
    chain = pki.tmp / "chain.pem"
    if not chain.exists():
        chain.write_text(_ca_pem(pki, "sub").read_text() + _ca_pem(pki, "root").read_text())
    cmd = ["openssl", "ocsp", "-issuer", str(_ca_pem(pki, issuer)), "-url", server.url, "-CAfile", str(chain),
           "-resp_text", *([] if nonce else ["-no_nonce"]), *args]
    if cert is not None:
        cmd += ["-cert", str(cert)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


def test_presigned_good_revoked_unknown_unauthorized(served):
    pki = served
    server = pki.start_server("--no-signer-keys")  # a pure lookup node: no key at all
    good, bad = pki.issued[0]["serial"], pki.issued[1]["serial"]
    rc, out = openssl_ocsp(pki, server, cert=_pem(pki, good))
    assert rc == 0 and "Response verify OK" in out and f"{good[:8]}" not in out.split(":")[0]
    assert ": good" in out
    # the delegated signer certificate is in the response and carries ocsp-nocheck
    assert "OCSP No Check" in out and "OCSP Signing" in out
    # revoke while the server runs: the next query sees it (the lookup node has no key, so
    # until the response is re-signed it says unauthorized -- never the stale "good")
    pki.run("revoke", bad, "--ca", "sub", "--reason", "keyCompromise")
    rc, out = openssl_ocsp(pki, server, cert=_pem(pki, bad))
    assert ": good" not in out, out
    pki.run("ocsp", "presign")
    time.sleep(0.6)
    rc, out = openssl_ocsp(pki, server, cert=_pem(pki, bad))
    assert rc == 0 and ": revoked" in out and "Reason: keyCompromise" in out and "Revocation Time:" in out, out
    # a serial the CA never issued: no stored response, and no key to sign "unknown" with
    rc, out = openssl_ocsp(pki, server, "-serial", "0x1234567890abcdef")
    assert "unauthorized" in out.lower(), out
    # an issuer this responder does not serve
    rc, out = openssl_ocsp(pki, server, "-serial", "0x1234", issuer="root")
    assert "unauthorized" in out.lower(), out


def test_live_answers_right_after_revocation_and_echo_nonce(served):
    pki = served
    server = pki.start_server()  # with the signer key: misses and nonce requests are signed live
    serial = pki.issued[2]["serial"]
    pki.run("revoke", serial, "--ca", "sub", "--reason", "superseded")
    rc, out = openssl_ocsp(pki, server, cert=_pem(pki, serial), nonce=True)
    assert rc == 0 and "Response verify OK" in out and ": revoked" in out and "Reason: superseded" in out, out
    assert "WARNING: no nonce" not in out and "Nonce" in out
    # the signer certificate alone is enough to verify (VAfile)
    signer = pki.tmp / "signer.pem"
    cas = pki.ca_info("sub")
    signer_serial = [c["serial"] for c in json.loads(pki.run("cert", "list", "--ca", "sub", "--json").stdout)
                     if c["profile"] == "ocsp-signer"][0]
    signer.write_text(pki.run("cert", "export", signer_serial).stdout)
    r = subprocess.run(["openssl", "ocsp", "-issuer", str(pki.export("sub")), "-cert", str(_pem(pki, serial)),
                        "-url", server.url, "-VAfile", str(signer), "-no_nonce"], capture_output=True, text=True)
    assert "Response verify OK" in r.stdout + r.stderr and "revoked" in r.stdout, r.stdout + r.stderr
    assert cas["name"] == "sub"


def test_two_worker_processes(served):
    pki = served
    server = pki.start_server("--workers", "2")
    for _ in range(6):
        rc, out = openssl_ocsp(pki, server, cert=_pem(pki, pki.issued[3]["serial"]))
        assert rc == 0 and ": good" in out, out


def test_signer_renewal_only_when_due_and_errors(served):
    pki = served
    r = pki.run("ocsp", "signer", "--ca", "sub", "--renew-if-due", "--json")
    # a fresh 90-day signer is not due: "nothing done" as an object, never a JSON null
    assert json.loads(r.stdout) == {"ca": "sub", "issued": False, "reason": "the OCSP signer is not due for renewal"}
    assert_one_line_error(pki.unica("ocsp", "presign", "--ca", "nope", env=pki.env), "no CA named")
    assert_one_line_error(pki.unica("ocsp", "configure", "--ca", "sub", "--validity", "soon", env=pki.env),
                          "bad duration")
    # live mode needs a signer: refused before the socket opens
    pki.run("ocsp", "configure", "--ca", "root", "--mode", "live")
    r = pki.unica("ocsp", "serve", "--ca", "root", "--port", "0", env=pki.env, timeout=60)
    assert_one_line_error(r, "no OCSP signer")


def test_live_mode_get_and_post_with_caching_headers(served):
    pki = served
    pki.run("ocsp", "configure", "--ca", "sub", "--mode", "live")
    server = pki.start_server("--ca", "sub")
    cert = x509.load_pem_x509_certificate(_pem(pki, pki.issued[4]["serial"]).read_bytes())
    issuer = x509.load_pem_x509_certificate(pki.export("sub").read_bytes())
    der = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build().public_bytes(
        serialization.Encoding.DER)
    path = urllib.parse.quote(base64.b64encode(der).decode(), safe="")
    with urllib.request.urlopen(server.url + path, timeout=10) as r:
        body, headers = r.read(), r.headers
    resp = ocsp.load_der_ocsp_response(body)
    assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert headers["Content-Type"] == "application/ocsp-response"
    assert "max-age=" in headers["Cache-Control"] and headers["ETag"] and headers["Expires"]
    req = urllib.request.Request(server.url, data=der, headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert ocsp.load_der_ocsp_response(r.read()).certificate_status == ocsp.OCSPCertStatus.GOOD
        assert r.headers["Cache-Control"] == "no-store"
    # garbage gets malformedRequest, and the server keeps serving
    req = urllib.request.Request(server.url, data=b"\x30\x03\x02\x01", headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert ocsp.load_der_ocsp_response(r.read()).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    with urllib.request.urlopen(server.url + "healthz", timeout=5) as r:
        assert r.status == 200
