"""The service's TLS key on a token: nginx terminates TLS with the key on a SoftHSM2 token
(OpenSSL's PKCS#11 engine) and forwards the client certificate to ``unica serve`` in proxy mode,
as docs/service.md describes. Checked with curl through nginx: the server certificate curl sees
is the one whose key is on the token, an EST enrollment works, a re-enrollment authenticated by
the forwarded client certificate works, and a revoked forwarded certificate is refused by the
service (not by nginx); the header sent straight to the service from an untrusted address is
refused.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import TEST_PIN
from tests.service.conftest import _add_tls_files, start_service
from tests.service.test_est import EST, NAME, SOFTHSM, USCC, certs_from_pkcs7, curl, enroll_args, run, software_csr

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def proxied(tmp_path):
    engine = subprocess.run(["openssl", "engine", "pkcs11", "-t"], capture_output=True).returncode == 0
    for what, present in (("nginx", Path(NGINX).exists()), ("OpenSSL's PKCS#11 engine", engine)):
        if not present:
            if os.environ.get("CI"):
                pytest.fail(f"{what} is missing (scripts/setup.sh installs it)")
            pytest.skip(f"{what} is missing")
    from tests.auth.conftest import build_joint_ca

    # a CA without operators (the legacy mode: the CLI acts as the OS user)
    j = _add_tls_files(build_joint_ca(tmp_path / "ca", cards=()))
    j.init_token("web-tls")
    env = {**os.environ, **{k: v for k, v in j.env.items() if v is not None}}
    ossl = tmp_path / "openssl.cnf"
    ossl.write_text(
        "openssl_conf = openssl_init\n[openssl_init]\nengines = engine_section\n[engine_section]\npkcs11 = p11\n"
        f"[p11]\nengine_id = pkcs11\nMODULE_PATH = {SOFTHSM}\ninit = 1\n"
        "[req]\ndistinguished_name = dn\n[dn]\n")
    pin = tmp_path / "token.pin"
    pin.write_text(TEST_PIN)
    pin.chmod(0o600)
    key_uri = f"pkcs11:token=web-tls;object=tls;type=private;pin-source=file:{pin}"
    run("pkcs11-tool", "--module", SOFTHSM, "--token-label", "web-tls", "--login", "--pin", TEST_PIN,
        "--keypairgen", "--key-type", "EC:prime256v1", "--label", "tls", "--id", "0a", env=env)
    csr = tmp_path / "tls.csr"
    run("openssl", "req", "-new", "-engine", "pkcs11", "-keyform", "engine", "-key", key_uri, "-subj",
        "/O=Port Joint CA/CN=unica service behind nginx", "-addext", "subjectAltName=IP:127.0.0.1", "-out", csr,
        env={**env, "OPENSSL_CONF": str(ossl)})
    chain = tmp_path / "tls.pem"
    j.ok("cert", "issue", "--ca", "root", "--profile", "tls-server", "--csr", str(csr), "--out", str(chain))
    svc = start_service(j, "--trusted-proxy", "127.0.0.1", tls=False)
    port = _free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""
daemon off;
master_process off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/nginx-error.log warn;
env SOFTHSM2_CONF;
env OPENSSL_CONF;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/nginx-body;
    proxy_temp_path {tmp_path}/nginx-proxy;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate     {chain};
        ssl_certificate_key "engine:pkcs11:{key_uri}";
        ssl_protocols       TLSv1.2 TLSv1.3;
        ssl_verify_client   optional_no_ca;
        ssl_verify_depth    4;
        client_max_body_size 64k;
        location / {{
            proxy_pass http://127.0.0.1:{svc.port};
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
            proxy_set_header X-Forwarded-For   $remote_addr;
            proxy_set_header Host              $host;
        }}
    }}
}}
""")
    log = tmp_path / "nginx.out"
    with log.open("wb") as out:
        proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp_path)], env={**env, "OPENSSL_CONF": str(ossl)},
                                stdout=out, stderr=out)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            err = (tmp_path / "nginx-error.log")
            assert proc.poll() is None and time.monotonic() < deadline, (
                log.read_text(errors="replace") + (err.read_text(errors="replace") if err.exists() else ""))
            time.sleep(0.1)
    front = type("Front", (), {})()
    front.url, front.ca_pem = f"https://127.0.0.1:{port}", svc.ca_pem
    try:
        yield j, svc, front, chain
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        svc.stop()


def test_tls_key_on_a_token_behind_nginx(proxied, tmp_path):
    j, svc, front, chain = proxied
    # the server certificate curl is shown is the one whose key is on the token
    shown = subprocess.run(["openssl", "s_client", "-connect", front.url.removeprefix("https://"), "-showcerts"],
                           input=b"", capture_output=True, timeout=30).stdout
    served = x509.load_pem_x509_certificate(shown[shown.index(b"-----BEGIN"):])
    assert served == x509.load_pem_x509_certificate(chain.read_bytes())

    j.ok("office", "add", "customs", "--ca", "root", "--profile", "enterprise-sign")
    j.ok("enterprise", "add", "--uscc", USCC, "--name", NAME, "--office", "customs")
    created = json.loads(j.ok("application", "create", "--uscc", USCC, "--profile", "enterprise-sign", "--holder",
                              "张三", "--ca", "root", "--json").stdout)
    key, b64 = software_csr(tmp_path, "ent")
    r = curl(front, f"{EST}/simpleenroll", *enroll_args(created["id"], created["code"], b64), work=tmp_path)
    assert r.status == 200, (r.status, r.body)
    certs_from_pkcs7(r.body, tmp_path, "ent")

    # re-enrollment: the client certificate goes through nginx in the header, the service checks it
    _, b64 = software_csr(tmp_path, "renew")
    r = curl(front, f"{EST}/simplereenroll", "--cert", tmp_path / "ent.pem", "--key", key, "-H",
             "Content-Type: application/pkcs10", "--data-binary", f"@{b64}", work=tmp_path)
    assert r.status == 200, (r.status, r.body)

    # revoked: refused by the service with its problem document and audit entry
    serial = format(x509.load_pem_x509_certificate((tmp_path / "ent.pem").read_bytes()).serial_number, "x")
    j.ok("cert", "revoke", serial, "--ca", "root", "--reason", "superseded")
    r = curl(front, f"{EST}/simplereenroll", "--cert", tmp_path / "ent.pem", "--key", key, "-H",
             "Content-Type: application/pkcs10", "--data-binary", f"@{b64}", work=tmp_path)
    assert r.status == 403 and r.problem()["type"] == "urn:unica:problem:client-certificate", (r.status, r.body)
    assert j.sql("SELECT count(*) FROM audit_log WHERE event = 'service.client_refused'")[0][0] >= 1
