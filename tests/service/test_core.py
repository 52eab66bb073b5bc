"""The service core (issue #13), on the real ``unica serve`` over TLS on 127.0.0.1: health,
readiness, metrics, the OpenAPI document against the routes, problem documents, the limits,
Idempotency-Key, client certificates (checked per request against the CA's own rows), proxy
mode, the start-up refusals, N workers, and two services on one PostgreSQL answering as one."""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import subprocess
import time
import urllib.parse
import uuid

import pytest

from tests.auth.conftest import bootstrap, build_joint_ca, fresh_pg_database
from tests.conftest import assert_one_line_error, run_unica
from tests.service.conftest import (TLS_PASSPHRASE, ClientCert, _add_tls_files, copy_service_ca, openssl,
                                    start_service)

USCC = ["91350100M000100Y43", "91110000600037341L", "91310000MA1FL1234Q", "91440300MA5D12345W"]


def _no_leak(r) -> None:
    assert r.status < 500, (r.status, r.body)
    assert b"Traceback" not in r.body and b'File "' not in r.body, r.body


def _metric(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def officer(service) -> ClientCert:
    """frank: an ra-officer of office customs with a software key (a TLS client certificate)."""
    cert = service.client_cert("Frank")
    service.add_operator("frank", cert, "--role", "ra-officer", "--office", "customs")
    return cert


def other_ca_cert(tmp_path, cn: str = "Mallory", issuer_subject: str = "/CN=Elsewhere Root") -> ClientCert:
    """A client certificate from a CA that is not the service's (openssl, its own root)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    d = tmp_path / f"other-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            str(d / "ca.key"), "-out", str(d / "ca.pem"), "-subj", issuer_subject, "-days", "30",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            str(d / "c.key"), "-out", str(d / "c.csr"), "-subj", f"/CN={cn}")
    (d / "ext").write_text("keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", str(d / "c.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-days", "30", "-extfile", str(d / "ext"), "-out", str(d / "c.pem"))
    cert = x509.load_pem_x509_certificate((d / "c.pem").read_bytes())
    return ClientCert(d / "c.pem", d / "c.key", format(cert.serial_number, "x"), cert.public_bytes(Encoding.DER))


def _revoke(svc, cert: ClientCert) -> None:
    svc.ok("cert", "revoke", cert.serial, "--ca", "root", "--reason", "keyCompromise", who="alice")


# --- health, readiness, metrics, OpenAPI ----------------------------------------------------------


def test_health_and_readiness(service):
    from unica.store.db import SCHEMA_HEAD

    r = service.request("GET", "/healthz")
    assert r.status == 200 and r.json == {"status": "ok"}
    r = service.request("GET", "/readyz")
    assert r.status == 200 and r.json == {"status": "ready", "schema": SCHEMA_HEAD}
    assert "server" not in r.headers  # no server banner


def test_readyz_says_not_ready_when_the_schema_is_not_this_versions(serve):
    svc = serve()
    svc.sql("UPDATE alembic_version SET version_num = '0001'")
    r = svc.request("GET", "/readyz")
    assert r.status == 503 and r.problem["type"] == "urn:unica:problem:not-ready", r.body
    assert "0001" in r.problem["detail"] and r.headers.get("retry-after")
    assert svc.request("GET", "/healthz").status == 200  # alive all the same


def test_metrics_count_requests_refusals_and_latency(service):
    for _ in range(3):
        service.request("GET", "/healthz")
    r = service.request("GET", "/no/such/thing")
    assert r.status == 404 and r.problem["type"] == "urn:unica:problem:not-found"
    m = service.request("GET", "/metrics")
    assert m.status == 200 and m.headers["content-type"].startswith("text/plain")
    text = m.body.decode()
    assert _metric(text, "unica_http_requests_total", route="/healthz", method="GET", status="200") >= 3
    assert _metric(text, "unica_http_requests_total", route="<unmatched>", status="404") >= 1
    assert _metric(text, "unica_refusals_total", slug="not-found") >= 1
    assert _metric(text, "unica_http_request_duration_seconds_count", route="/healthz") >= 3
    # the route label is the template, never the raw path: no label per request
    assert "/no/such/thing" not in text


def _implemented(app) -> set[tuple[str, str]]:
    """(path, method) of every route the application answers, read from its routing table."""
    out = set()

    def walk(routes):
        for r in routes:
            contexts = getattr(r, "effective_route_contexts", None)
            if contexts is not None:  # an included router (FastAPI >= 0.16x keeps them as branches)
                for c in contexts():
                    if getattr(c, "include_in_schema", True):
                        out.update((c.path_format, m) for m in c.methods or ())
                continue
            if getattr(r, "include_in_schema", True) and getattr(r, "methods", None):
                out.update((r.path, m) for m in r.methods)
            if getattr(r, "routes", None):
                walk(r.routes)

    walk(app.routes)
    return {(p, m) for p, m in out if m != "HEAD" and p not in ("/openapi.json",)}


def test_openapi_documents_exactly_the_implemented_routes(service, tmp_path):
    """The document served at /openapi.json and the routing table agree: every route is
    documented with its methods, nothing is documented that is not routed; and the live service
    routes every documented operation (no 404/405 from the router) and refuses other methods."""
    from unica.service.app import create_app
    from unica.service.settings import Settings

    r = service.request("GET", "/openapi.json")
    assert r.status == 200, r.body
    doc = r.json
    assert doc["openapi"].startswith("3.") and doc["info"]["title"] == "unica"
    documented = {(p, m.upper()) for p, ops in doc["paths"].items() for m in ops
                  if m in ("get", "post", "put", "patch", "delete")}
    implemented = _implemented(create_app(Settings(tls_cert=tmp_path / "unused")))
    assert documented == implemented, {"undocumented": implemented - documented, "not routed": documented - implemented}
    for must in ("/healthz", "/readyz", "/metrics", "/.well-known/est/simpleenroll"):
        assert must in doc["paths"], must
    assert any(p.startswith("/api/v1/") for p in doc["paths"])
    # the live service answers every documented operation through a route (whatever it thinks of the request)
    for path, method in sorted(documented):
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        reply = service.request(method, concrete, body=b"" if method == "POST" else None)
        _no_leak(reply)
        assert reply.status != 405, (method, path, reply.body)
        if reply.status == 404:
            assert reply.problem.get("detail") != "Not Found", (method, path)  # the handler's 404, not the router's
    r = service.request("DELETE", "/healthz")
    assert r.status == 405 and r.problem["type"] == "urn:unica:problem:method-not-allowed"


# --- problems ---------------------------------------------------------------------------------------


def test_errors_are_problem_documents(service, officer):
    r = service.request("GET", "/nothing-here")
    assert r.status == 404 and r.headers["content-type"] == "application/problem+json"
    p = r.problem
    assert p["type"] == "urn:unica:problem:not-found" and p["status"] == 404 and p["title"]
    r = service.request("POST", "/api/v1/enterprises", body=b'{"uscc": ', cert=officer,
                        headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.problem["type"] == "urn:unica:problem:malformed", r.body
    _no_leak(r)
    r = service.request("GET", "/api/v1/me")
    assert r.status == 401 and r.problem["type"] == "urn:unica:problem:client-certificate-required", r.body


# --- limits ------------------------------------------------------------------------------------------


def _raw(svc, data: bytes, *, wait: float = 10, tls: bool = True) -> bytes:
    """Send raw bytes on a new connection; what comes back until the server closes or ``wait`` passes."""
    sock = socket.create_connection((svc.host, svc.port), timeout=wait)
    if tls:
        sock = ssl.create_default_context(cafile=str(svc.ca_pem)).wrap_socket(sock, server_hostname=svc.host)
    try:
        sock.sendall(data)
        out = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (socket.timeout, ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and _complete(out):
                break
        return out
    finally:
        sock.close()


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
    return bool(m) and len(body) >= int(m.group(1))


def _status(data: bytes) -> int:
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    assert m, data[:200]
    return int(m.group(1))


def test_a_body_over_the_limit_is_refused_before_it_is_read(service):
    """Content-Length above --max-body: 413 at once, without the body ever being sent."""
    t0 = time.monotonic()
    out = _raw(service, b"POST /api/v1/enterprises HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 100000000\r\n\r\n", wait=10)
    assert _status(out) == 413 and time.monotonic() - t0 < 5
    assert b"urn:unica:problem:body-too-large" in out


def test_the_rate_per_client_is_bounded(serve):
    svc = serve("--rate", "1", "--burst", "3")
    codes = [svc.request("GET", "/whoami").status for _ in range(6)]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:], codes
    r = svc.request("GET", "/whoami")
    assert r.status == 429 and int(r.headers["retry-after"]) >= 1
    assert r.problem["type"] == "urn:unica:problem:rate-limited"
    assert svc.request("GET", "/healthz").status == 200  # probes are not limited
    time.sleep(2.2)
    assert svc.request("GET", "/whoami").status == 200  # the bucket refills


def test_a_request_slower_than_the_time_limit_is_cut_off(serve):
    svc = serve("--request-timeout", "1.5")
    t0 = time.monotonic()
    sock = ssl.create_default_context(cafile=str(svc.ca_pem)).wrap_socket(
        socket.create_connection((svc.host, svc.port), timeout=15), server_hostname=svc.host)
    try:
        sock.sendall(b"POST /api/v1/applications/self-service HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{")
        out = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
    finally:
        sock.close()
    assert _status(out) == 408 and b"client-too-slow" in out
    assert time.monotonic() - t0 < 10


# --- Idempotency-Key ------------------------------------------------------------------------------


def _enterprise(uscc: str, name: str) -> dict:
    return {"uscc": uscc, "name": name, "office": "customs"}


def test_idempotency_key_replays_the_first_answer(service, officer):
    key = str(uuid.uuid4())
    body = _enterprise(USCC[0], "福州示例科技有限公司")
    first = service.request("POST", "/api/v1/enterprises", body, headers={"Idempotency-Key": key}, cert=officer)
    assert first.status == 201, first.body
    again = service.request("POST", "/api/v1/enterprises", body, headers={"Idempotency-Key": key}, cert=officer)
    assert again.status == 201 and again.body == first.body
    assert again.headers.get("idempotent-replayed") == "true"
    assert service.sql("SELECT count(*) FROM enterprises WHERE uscc = :u", u=USCC[0])[0][0] == 1
    # the same key for another request: refused, nothing done
    other = service.request("POST", "/api/v1/enterprises", _enterprise(USCC[1], "北京示例有限公司"),
                            headers={"Idempotency-Key": key}, cert=officer)
    assert other.status == 422 and other.problem["type"] == "urn:unica:problem:idempotency-mismatch"
    assert service.sql("SELECT count(*) FROM enterprises WHERE uscc = :u", u=USCC[1])[0][0] == 0
    # without the key, the retry is a second request (refused by the registry: already registered)
    dup = service.request("POST", "/api/v1/enterprises", body, cert=officer)
    assert dup.status in (400, 403, 409, 422) and dup.headers.get("idempotent-replayed") is None, dup.body
    # the database holds neither the key nor the answer in the clear
    rows = service.sql("SELECT key, body, status_code FROM idempotency_keys")
    assert rows and all(r[0] != key and key not in r[0] for r in rows)
    assert all(b"uscc" not in bytes(r[1] or b"") and USCC[0].encode() not in bytes(r[1] or b"") for r in rows)


def test_idempotency_key_is_per_client_and_checked(service, officer):
    key = str(uuid.uuid4())
    r = service.request("POST", "/api/v1/enterprises", _enterprise(USCC[2], "上海示例有限公司"),
                        headers={"Idempotency-Key": "bad key with spaces"}, cert=officer)
    assert r.status == 400 and r.problem["type"] == "urn:unica:problem:malformed"
    r = service.request("POST", "/api/v1/enterprises", _enterprise(USCC[2], "上海示例有限公司"),
                        headers={"Idempotency-Key": "k" * 201}, cert=officer)
    assert r.status == 400
    # another client (no certificate) with the same key: its own request, not frank's answer
    first = service.request("POST", "/api/v1/enterprises", _enterprise(USCC[2], "上海示例有限公司"),
                            headers={"Idempotency-Key": key}, cert=officer)
    assert first.status == 201
    anon = service.request("POST", "/api/v1/enterprises", _enterprise(USCC[2], "上海示例有限公司"),
                           headers={"Idempotency-Key": key})
    assert anon.status == 401 and anon.headers.get("idempotent-replayed") is None


# --- client certificates --------------------------------------------------------------------------------


def test_client_certificates_valid_revoked_and_foreign(service, tmp_path):
    carl = service.client_cert("Carl")
    r = service.request("GET", "/whoami", cert=carl)
    assert r.status == 200, r.body
    c = r.json["certificate"]
    assert c["serial"] == carl.serial and c["ca"] == "root" and c["profile"] == "operator", c
    assert service.request("GET", "/whoami").json["certificate"] is None
    # revoked while a connection stays open: refused at its next request
    conn = service.connection(carl)
    try:
        conn.request("GET", "/whoami")
        first = conn.getresponse()
        assert first.status == 200
        first.read()
        _revoke(service, carl)
        conn.request("GET", "/whoami")
        second = conn.getresponse()
        body = second.read()
        assert second.status == 403, body
        assert json.loads(body)["type"] == "urn:unica:problem:client-certificate"
        assert "revoked" in json.loads(body)["detail"]
    finally:
        conn.close()
    entries = [d if isinstance(d, dict) else json.loads(d)
               for (d,) in service.sql("SELECT details FROM audit_log WHERE event = 'service.client_refused'")]
    assert any(e["serial"] == carl.serial and "revoked" in e["reason"] and e["client"] == "127.0.0.1"
               and e["certificate_sha256"] for e in entries), entries
    # a certificate of another CA does not get through the handshake
    mallory = other_ca_cert(tmp_path)
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
        service.request("GET", "/whoami", cert=mallory)
    # nor one naming the service's root as its issuer, signed by another key
    forged = other_ca_cert(tmp_path, "Forger", "/C=CN/O=Port Joint CA/CN=Port Root")
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
        service.request("GET", "/whoami", cert=forged)
    assert service.request("GET", "/healthz").status == 200


def test_an_operator_certificate_is_accepted_and_a_revoked_operator_refused(service):
    """require_operator: an active operator's certificate opens the officer routes; the same
    operator's revoked certificate is refused at the next request."""
    olga = service.client_cert("Olga")
    service.add_operator("olga", olga, "--role", "ra-officer", "--office", "customs")
    r = service.request("GET", "/api/v1/enterprises", cert=olga)
    assert r.status == 200, r.body
    stranger = service.client_cert("Stranger")  # an operator-profile certificate, but no operator
    r = service.request("GET", "/api/v1/enterprises", cert=stranger)
    assert r.status == 403 and r.problem["type"] == "urn:unica:problem:client-certificate", r.body
    _revoke(service, olga)
    r = service.request("GET", "/api/v1/enterprises", cert=olga)
    assert r.status == 403, r.body


# --- proxy mode ------------------------------------------------------------------------------------------


def _forwarded(cert: ClientCert) -> str:
    return urllib.parse.quote(cert.cert.read_text())  # nginx's $ssl_client_escaped_cert


def test_proxy_mode_believes_the_certificate_header_only_from_a_trusted_proxy(serve, tmp_path):
    svc = serve("--trusted-proxy", "127.0.0.1", tls=False)
    paul = svc.client_cert("Paul")
    r = svc.request("GET", "/whoami", headers={"X-SSL-Client-Cert": _forwarded(paul), "X-Forwarded-For": "203.0.113.9"})
    assert r.status == 200, r.body
    assert r.json["via_proxy"] and r.json["address"] == "203.0.113.9" and r.json["certificate"]["serial"] == paul.serial
    # the proxy's header carries a certificate of another CA: the service refuses it itself
    r = svc.request("GET", "/whoami", headers={"X-SSL-Client-Cert": _forwarded(other_ca_cert(tmp_path))})
    assert r.status == 403 and r.problem["type"] == "urn:unica:problem:client-certificate"
    r = svc.request("GET", "/whoami", headers={"X-SSL-Client-Cert": "garbage%20here"})
    assert r.status == 400, r.body
    _revoke(svc, paul)
    r = svc.request("GET", "/whoami", headers={"X-SSL-Client-Cert": _forwarded(paul)})
    assert r.status == 403 and "revoked" in r.problem["detail"]

    # the same header from an address that is not a trusted proxy: refused, over TLS and without
    untrusted = serve("--trusted-proxy", "127.0.0.2", tls=False)
    r = untrusted.request("GET", "/whoami", headers={"X-SSL-Client-Cert": _forwarded(paul)})
    assert r.status == 403 and r.problem["type"] == "urn:unica:problem:untrusted-proxy"
    r = untrusted.request("GET", "/whoami")
    assert r.status == 403 and r.problem["type"] == "urn:unica:problem:untrusted-proxy"  # plain HTTP: the proxy's
    assert untrusted.request("GET", "/readyz").status == 200  # probes are answered
    tls = serve("--trusted-proxy", "127.0.0.2")
    olive = tls.client_cert("Olive")
    r = tls.request("GET", "/whoami", headers={"X-SSL-Client-Cert": _forwarded(olive)})
    assert r.status == 403 and r.problem["type"] == "urn:unica:problem:untrusted-proxy"
    assert tls.request("GET", "/whoami", cert=olive).json["certificate"]["serial"] == olive.serial


# --- start-up ----------------------------------------------------------------------------------------------


def _serve_fails(j, *args, env=None) -> subprocess.CompletedProcess:
    p = run_unica("serve", "--host", "127.0.0.1", "--port", "0", *args,
                  env={**j.env, "UNICA_PASSPHRASE": TLS_PASSPHRASE, **(env or {})}, timeout=60)
    assert TLS_PASSPHRASE not in p.stdout + p.stderr
    return p


def test_serve_fails_fast_on_bad_tls_files_and_a_taken_port(service_ca):
    j = service_ca
    cert, key = str(j.dir / "server.pem"), str(j.dir / "server.key")
    p = _serve_fails(j, "--tls-cert", str(j.dir / "missing.pem"), "--tls-key", key)
    assert_one_line_error(p, "missing.pem")
    assert p.returncode == 1
    p = _serve_fails(j, "--tls-cert", cert, "--tls-key", cert)
    assert_one_line_error(p, "TLS")
    assert p.returncode == 1
    p = _serve_fails(j, "--tls-cert", cert, "--tls-key", key, env={"UNICA_PASSPHRASE": "wrong-passphrase"})
    assert_one_line_error(p, "passphrase")
    assert p.returncode == 1 and "wrong-passphrase" not in p.stderr
    p = _serve_fails(j, "--tls-cert", cert, "--tls-key", key, env={"UNICA_PASSPHRASE": None})
    assert_one_line_error(p, "UNICA_PASSPHRASE")
    assert p.returncode == 1
    p = _serve_fails(j, "--tls-cert", cert, "--tls-key", "pkcs11:token=x;object=tls")
    assert_one_line_error(p, "reverse proxy")
    other = copy_service_ca(j, j.dir / "mismatch")
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(other.dir / "k.pem"))
    p = _serve_fails(j, "--tls-cert", cert, "--tls-key", str(other.dir / "k.pem"))
    assert_one_line_error(p, "does not match")
    assert p.returncode == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        p = run_unica("serve", "--host", "127.0.0.1", "--port", str(port), "--tls-cert", cert, "--tls-key", key,
                      env={**j.env, "UNICA_PASSPHRASE": TLS_PASSPHRASE}, timeout=60)
        assert_one_line_error(p, f"127.0.0.1:{port}")
        assert p.returncode == 1
    p = run_unica("serve", "--port", "0", env=j.env)
    assert_one_line_error(p, "--tls-cert")
    assert p.returncode == 2


def _children(pid: int) -> list[int]:
    from pathlib import Path

    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_workers_share_the_port_and_the_metrics(serve):
    svc = serve(workers=3)
    for _ in range(30):
        assert svc.request("GET", "/healthz").status == 200
    text = svc.request("GET", "/metrics").body.decode()
    # every worker's requests, whichever worker answered the scrape (prometheus multiprocess mode)
    assert _metric(text, "unica_http_requests_total", route="/healthz", status="200") >= 30
    assert len(_children(svc.proc.pid)) == 3
    assert svc.stop() == 0


# --- two services, one PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture
def pg_service_ca(tmp_path, pg_url):
    j = build_joint_ca(tmp_path / "pg", db=fresh_pg_database(pg_url), cards=("alice", "bob"))
    return bootstrap(_add_tls_files(j))


def test_two_services_on_one_postgresql_answer_as_one(pg_service_ca):
    j = pg_service_ca
    a = start_service(j)
    b = start_service(j)
    try:
        for s in (a, b):
            assert s.request("GET", "/readyz").status == 200
        frank = a.client_cert("Frank")
        a.add_operator("frank", frank, "--role", "ra-officer", "--office", "customs")
        key = str(uuid.uuid4())
        body = _enterprise(USCC[3], "深圳示例有限公司")
        first = a.request("POST", "/api/v1/enterprises", body, headers={"Idempotency-Key": key}, cert=frank)
        assert first.status == 201, first.body
        retry = b.request("POST", "/api/v1/enterprises", body, headers={"Idempotency-Key": key}, cert=frank)
        assert retry.status == 201 and retry.body == first.body and retry.headers["idempotent-replayed"] == "true"
        assert j.sql("SELECT count(*) FROM enterprises WHERE uscc = :u", u=USCC[3])[0][0] == 1
        # what one process writes, the other reads: the enterprise, and a revocation
        assert [e["uscc"] for e in b.request("GET", "/api/v1/enterprises", cert=frank).json] == [USCC[3]]
        _revoke(a, frank)
        assert b.request("GET", "/whoami", cert=frank).status == 403
        assert a.request("GET", "/whoami", cert=frank).status == 403
    finally:
        a.stop()
        b.stop()


def test_concurrent_retries_with_one_key_act_once(service, officer):
    """Six copies of one POST at once, one Idempotency-Key: the row is the lock -- one runs, the
    others get its answer replayed or 409 (in progress); one enterprise is registered."""
    import concurrent.futures

    key = str(uuid.uuid4())
    body = _enterprise("91330100MA2B000018", "杭州并发示例有限公司")

    def post(_):
        return service.request("POST", "/api/v1/enterprises", body, headers={"Idempotency-Key": key}, cert=officer)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(post, range(6)))
    firsts = [r for r in replies if r.status == 201 and not r.headers.get("idempotent-replayed")]
    assert len(firsts) == 1, [(r.status, r.headers.get("idempotent-replayed")) for r in replies]
    for r in replies:
        assert (r.status == 201 and r.body == firsts[0].body) or (
            r.status == 409 and r.problem["type"] == "urn:unica:problem:idempotency-in-progress"
            and r.headers["retry-after"]), (r.status, r.body)
    assert service.sql("SELECT count(*) FROM enterprises WHERE uscc = '91330100MA2B000018'")[0][0] == 1
    later = post(0)
    assert later.status == 201 and later.body == firsts[0].body and later.headers["idempotent-replayed"] == "true"


def test_a_request_the_service_cannot_finish_in_time_is_a_503(serve):
    """The database is locked by another writer: the request is answered 503 ``timeout`` with
    Retry-After when --request-timeout is up, and the service goes on answering."""
    import sqlite3

    svc = serve("--request-timeout", "1.5")
    frank = svc.client_cert("Frank")
    svc.add_operator("frank", frank, "--role", "ra-officer", "--office", "customs")
    db = sqlite3.connect(str(svc.home / "unica.db"), isolation_level=None, timeout=30)
    try:
        db.execute("BEGIN IMMEDIATE")  # another writer holds the database
        t0 = time.monotonic()
        r = svc.request("POST", "/api/v1/enterprises", _enterprise("91440300MA5D12345W", "深圳慢速示例有限公司"),
                        cert=frank)
        assert r.status == 503 and r.problem["type"] == "urn:unica:problem:timeout", r.body
        assert r.headers["retry-after"] and time.monotonic() - t0 < 10
        assert svc.request("GET", "/healthz").status == 200
    finally:
        db.execute("ROLLBACK")
        db.close()


def test_issuance_is_counted_in_the_metrics(service, tmp_path):
    """An EST enrollment (curl, as RFC 7030's example) through the service's issuer: counted by CA
    and profile in /metrics."""
    import base64

    def issued() -> float:
        return _metric(service.request("GET", "/metrics").body.decode(), "unica_certificates_issued_total",
                       ca="root", profile="enterprise-sign")

    before = issued()
    service.ok("enterprise", "add", "--uscc", USCC[3], "--name", "深圳计量示例有限公司", "--office", "customs", who="bob")
    created = json.loads(service.ok("application", "create", "--uscc", USCC[3], "--profile", "enterprise-sign",
                                    "--holder", "王五", "--ca", "root", "--json", who="bob").stdout)
    der = tmp_path / "req.der"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            str(tmp_path / "k.pem"), "-subj", "/CN=whoever", "-outform", "DER", "-out", str(der))
    (tmp_path / "req.b64").write_bytes(base64.encodebytes(der.read_bytes()))
    p = service.curl("/.well-known/est/simpleenroll", "--user", f"{created['id']}:{created['code']}",
                     "-H", "Content-Type: application/pkcs10", "--data-binary", f"@{tmp_path / 'req.b64'}",
                     "-w", "%{http_code}", "-o", str(tmp_path / "out.p7"))
    assert p.stdout == b"200", (p.stdout, p.stderr, (tmp_path / "out.p7").read_bytes()[:300])
    assert issued() == before + 1
