"""The service killed during enrollments loses nothing (issue #13): intent-before-sign through
the HTTP layer.

Several EST enrollments are in flight when ``unica serve`` is killed with SIGKILL, at a
different moment each round. Then ``unica recover --older-than 0s`` (the operator's step after
a crash) and a new service. Afterwards:

- no issuance intent is left pending, and every certificate the database holds is signed and
  whole (its DER matches its recorded TBS);
- no application has more than one certificate: a code issued at most once;
- every enterprise gets its certificate by sending the same request again with the same code:
  an enrollment that never issued was rolled back (the code works again), and one that issued
  but whose answer was lost answers that same certificate (same key), not a second one;
- an answer a client did receive is the certificate the database holds.
"""

from __future__ import annotations

import base64
import http.client
import os
import random
import signal
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from tests.service.conftest import copy_service_ca, start_service
from tests.service.test_est import EST, NAME, USCC
from tests.service.test_journey import api, officer

ROUNDS = 3
IN_FLIGHT = 6


def _csr() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crash")]))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


def _enroll(svc, app_id: str, code: str, csr: bytes, timeout: float = 60):
    """(status, certificate DER or None); (None, None) when the connection broke."""
    auth = base64.b64encode(f"{app_id}:{code}".encode()).decode()
    try:
        conn = svc.connection(timeout=timeout)
        conn.request("POST", f"{EST}/simpleenroll", body=base64.encodebytes(csr),
                     headers={"Authorization": f"Basic {auth}", "Content-Type": "application/pkcs10"})
        r = conn.getresponse()
        body = r.read()
        conn.close()
    except (OSError, http.client.HTTPException):
        return None, None
    if r.status != 200:
        return r.status, None
    (cert,) = pkcs7.load_der_pkcs7_certificates(base64.b64decode(body))
    return 200, cert.public_bytes(serialization.Encoding.DER)


def test_killed_during_enrollments_loses_nothing(tmp_path, _service_template):
    j = copy_service_ca(_service_template, tmp_path / "ca")
    svc = start_service(j)
    frank = officer(svc, "frank")
    api(svc, frank, "POST", "/enterprises", {"uscc": USCC, "name": NAME, "office": "customs"})
    rnd = random.Random(int.from_bytes(os.urandom(4), "big"))
    received: dict[str, bytes] = {}  # application id -> the certificate its client received
    work: dict[str, tuple[str, bytes]] = {}  # application id -> (code, CSR)
    try:
        for round_ in range(ROUNDS):
            batch = {}
            for i in range(IN_FLIGHT):
                created = api(svc, frank, "POST", "/applications",
                              {"uscc": USCC, "profile": "enterprise-sign", "holder": f"持有人{round_}-{i}"})
                batch[created["id"]] = (created["code"], _csr())
            work.update(batch)
            outcomes: dict[str, tuple] = {}

            def client(app_id, code, csr):
                outcomes[app_id] = _enroll(svc, app_id, code, csr)

            threads = [threading.Thread(target=client, args=(a, c, r)) for a, (c, r) in batch.items()]
            for t in threads:
                t.start()
            time.sleep(rnd.uniform(0.05, 0.6))  # a different moment of the enrollments each round
            os.kill(svc.proc.pid, signal.SIGKILL)
            svc.proc.wait(10)
            for t in threads:
                t.join(90)
            for app_id, (status, der) in outcomes.items():
                if status == 200:
                    received[app_id] = der
            j.ok("recover", "--older-than", "0s", who="alice")
            assert j.sql("SELECT count(*) FROM certificates WHERE status = 'pending'")[0][0] == 0
            svc = start_service(j)
    finally:
        svc.stop()
    svc = start_service(j)
    try:
        # every enterprise sends its request again, with its code: each gets its certificate
        for app_id, (code, csr) in work.items():
            status, der = _enroll(svc, app_id, code, csr)
            assert status == 200, (app_id, status)
            if app_id in received:
                assert der == received[app_id], f"{app_id}: a second certificate for a received one"
            issued = j.sql("SELECT count(*) FROM certificates WHERE requester = :r AND status != 'failed'",
                           r=f"application {app_id}")[0][0]
            assert issued == 1, (app_id, issued)
            held = j.sql("SELECT c.der FROM certificates c JOIN applications a ON a.certificate_id = c.id "
                         "WHERE a.id = :i", i=app_id)
            assert held and bytes(held[0][0]) == der
    finally:
        svc.stop()
    # every stored certificate is whole: signed by the CA over exactly its recorded TBS
    root = x509.load_pem_x509_certificate((j.dir / "root.pem").read_bytes())
    for der, tbs in j.sql("SELECT der, tbs_der FROM certificates WHERE status = 'valid' AND der IS NOT NULL"):
        cert = x509.load_der_x509_certificate(bytes(der))
        cert.verify_directly_issued_by(root)
        if tbs is not None:
            assert cert.tbs_certificate_bytes == bytes(tbs)
    assert len(received) < len(work) or pytest.fail("no kill landed mid-enrollment in any round")
