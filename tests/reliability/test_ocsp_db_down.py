"""The OCSP responder with its database down (issue 7, item 3).

A lookup node (``unica ocsp serve --no-signer-keys``) on a PostgreSQL cluster of the test's
own serves pre-signed responses. With PostgreSQL stopped: cached responses keep being served,
byte for byte, until their nextUpdate (and not after); an uncached query gets the OCSP
``tryLater`` answer at once (not a 5xx, not a hang). With PostgreSQL started again the
responder recovers: a revocation made afterwards is served.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from tests.reliability import rel

VALIDITY = dt.timedelta(seconds=15)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
    return (ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
            .public_bytes(serialization.Encoding.DER))


def _ask(url: str, der: bytes, timeout: float = 10) -> tuple[int, bytes, float]:
    t = time.monotonic()
    req = urllib.request.Request(url, data=der, headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read(), time.monotonic() - t


def _status(body: bytes):
    return ocsp.load_der_ocsp_response(body).response_status


def test_responder_serves_cache_while_postgres_is_down_and_recovers(own_pg, tmp_path):
    from sqlalchemy import select

    from unica.ca.revocation import revoke
    from unica.store import models as m
    from unica.store import open_store

    url = own_pg.url
    home = tmp_path / "home"
    rel.make_pki(url, home, certs=6)
    store = open_store(url)
    with store.write() as s:
        ca = s.query(m.CA).filter_by(name=rel.SUB).one()
        ca.settings = {**(ca.settings or {}), "ocsp_validity_hours": VALIDITY.total_seconds() / 3600}
        issuer = x509.load_der_x509_certificate(ca.cert_der)
        leaves = [x509.load_der_x509_certificate(d) for d in s.execute(
            select(m.Certificate.der).where(m.Certificate.requester == "seed").order_by(m.Certificate.id)).scalars()]
    reqs = [_request(c, issuer) for c in leaves]

    port = _port()
    env = {**os.environ, "UNICA_HOME": str(home), "UNICA_DB": url}
    env.pop("UNICA_PASSPHRASE", None)
    server = subprocess.Popen([sys.executable, "-m", "unica", "ocsp", "serve", "--port", str(port),
                               "--no-signer-keys", "--poll-interval", "0.2"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 60
        while True:
            assert server.poll() is None, server.stderr.read()
            try:
                urllib.request.urlopen(base + "healthz", timeout=1).read()
                break
            except OSError:
                assert time.time() < deadline, "responder did not come up"
                time.sleep(0.2)
        rel.run_presign(store)  # responses valid for VALIDITY from now
        signed_at = time.monotonic()
        time.sleep(0.5)  # the poller evicts what was re-signed
        cached = {i: _ask(base, reqs[i])[1] for i in range(3)}  # loaded into the node's cache
        for body in cached.values():
            r = ocsp.load_der_ocsp_response(body)
            assert r.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
            assert r.certificate_status == ocsp.OCSPCertStatus.GOOD

        # the poller runs a few times (the responses were signed seconds ago: they are inside its
        # look-back window) and must keep what is current
        time.sleep(1.0)
        own_pg.stop("fast")
        for i in range(3):
            code, body, took = _ask(base, reqs[i])
            assert code == 200 and body == cached[i] and took < 2, (code, took)
        code, body, took = _ask(base, reqs[4])  # never asked before: not in the cache
        assert code == 200 and took < 5, (code, took)
        assert _status(body) == ocsp.OCSPResponseStatus.TRY_LATER, _status(body)
        health = urllib.request.urlopen(base + "healthz", timeout=5)
        assert health.status == 200  # a lookup node can still answer from its cache
        # past nextUpdate the cached response is no longer served (nothing fresher can be had)
        time.sleep(max(0.0, VALIDITY.total_seconds() + 1.5 - (time.monotonic() - signed_at)))
        code, body, took = _ask(base, reqs[0])
        assert code == 200 and body != cached[0] and took < 5
        assert _status(body) != ocsp.OCSPResponseStatus.SUCCESSFUL
        assert server.poll() is None, "the responder died with its database"

        own_pg.start()
        store.dispose()  # the test's own pool holds dead connections
        revoke(store, leaves[1].serial_number, ca=rel.SUB, reason="keyCompromise")
        rel.run_presign(store)
        deadline = time.time() + 20
        while True:  # the poller reconnects and evicts the re-signed responses
            code, body, _ = _ask(base, reqs[1])
            r = ocsp.load_der_ocsp_response(body)
            if (r.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
                    and r.certificate_status == ocsp.OCSPCertStatus.REVOKED):
                break
            assert time.time() < deadline, f"no recovery: {r.response_status}"
            time.sleep(0.3)
        assert r.revocation_reason == x509.ReasonFlags.key_compromise
        code, body, _ = _ask(base, reqs[4])
        assert ocsp.load_der_ocsp_response(body).certificate_status == ocsp.OCSPCertStatus.GOOD
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        store.dispose()
