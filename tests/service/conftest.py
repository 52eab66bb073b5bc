"""The real ``unica serve`` over TLS on 127.0.0.1, for the service tests (issue #13).

The CA is tests/auth's joint CA (CA ``root`` on a SoftHSM2 token; alice the admin, office
``customs`` with bob its ra-officer; carol, dave and erin with enrolled cards, not operators),
built once per run. To it the template adds, through the CLI as an admin would:

- before the first operator is added: the server's TLS certificate, issued by ``root`` under the
  ``tls-server`` profile with subjectAltName IP:127.0.0.1 (unica refuses a single-label DNS name),
  its key an encrypted PEM (passphrase in the service's ``UNICA_PASSPHRASE``);
- a profile ``short-client`` (the ``operator`` profile with a validity of a few seconds) and a
  client certificate issued under it (``expired.pem``, ``expired.key`` in the CA's directory:
  expired by the time any test runs; :func:`expired_cert`).

Fixtures:

- ``service`` (module): one running service on its own copy of the CA (own home, own tokens);
  ``site`` and ``api_service`` are the same object, under the names the EST and API tests use.
- ``serve`` (function): a factory, ``serve(*extra_args, ca=None, workers=1, env=None, tls=True)``
  -> a started :class:`Service` (stopped at the end of the test); ``ca`` a
  :class:`~tests.auth.conftest.JointCA` (default: a fresh copy); ``extra_args`` go to
  ``unica serve`` (``--rate 2``, ``--trusted-proxy 127.0.0.1``, ...). Unless ``--rate`` is among
  them, services are started with ``--rate 500 --burst 1000`` (tests send bursts from 127.0.0.1).
- ``service_ca`` (function): a fresh copy of the CA with the TLS files, no service running.

:class:`Service`: ``url`` (``https://127.0.0.1:PORT``), ``host``, ``port``, ``ca_pem`` (the root
certificate, PEM path: what clients trust), ``env``, ``home``, ``joint`` (the JointCA: ``ok``,
``run``, ``sql``, ``card``, ``csr`` -- also reachable on the service itself, e.g. ``site.ok(...)``),
``log`` (the server's stderr), ``request(method, path, body=None, headers=None, cert=None)`` ->
:class:`Reply` (Python's http.client over ssl; ``cert``: a :class:`ClientCert`),
``curl(path, *args)`` -> CompletedProcess (curl with ``--cacert``), ``client_cert(cn, profile=
"operator")`` -> :class:`ClientCert` (a software key and a certificate issued by ``root`` through the
CLI as alice), ``add_operator(name, cert, *roles_args)``, ``stop()``.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.auth.conftest import JointCA, bootstrap, build_joint_ca, copy_joint_ca

TLS_PASSPHRASE = "tls-key-passphrase-8152"
SHORT_PROFILE = "short-client"
SHORT_SECONDS = 4


@dataclass
class ClientCert:
    """A client certificate with its software key (PEM files) and its serial (hex, as stored)."""

    cert: Path
    key: Path
    serial: str
    der: bytes


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def problem(self) -> dict:
        assert self.headers.get("content-type", "").startswith("application/problem+json"), (self.headers, self.body)
        return json.loads(self.body)


def _env(base: dict) -> dict:
    env = dict(os.environ)
    for k, v in base.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def openssl(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], check=True, capture_output=True, **kw)


def issue_client_cert(j: JointCA, cn: str, *, profile: str = "operator", subject: str | None = None,
                      who: str | None = "alice") -> ClientCert:
    """A software key and a certificate for it, issued by CA ``root`` through the CLI as ``who``."""
    from cryptography import x509

    tag = f"{cn}-{uuid.uuid4().hex[:6]}"
    key, csr, pem = j.dir / f"{tag}.key", j.dir / f"{tag}.csr", j.dir / f"{tag}.pem"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
            "-out", str(csr), "-utf8", "-subj", subject or f"/C=CN/O=Port Joint CA/CN={cn}")
    j.ok("cert", "issue", "--ca", "root", "--profile", profile, "--csr", str(csr), "--out", str(pem), who=who)
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    from cryptography.hazmat.primitives.serialization import Encoding

    return ClientCert(pem, key, format(cert.serial_number, "x"), cert.public_bytes(Encoding.DER))


def _add_tls_files(j: JointCA) -> JointCA:
    key, csr, pem = j.dir / "server.key", j.dir / "server.csr", j.dir / "server.pem"
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes256", "-pass",
            f"pass:{TLS_PASSPHRASE}", "-out", str(key))
    openssl("req", "-new", "-key", str(key), "-passin", f"pass:{TLS_PASSPHRASE}", "-out", str(csr),
            "-subj", "/O=Port Joint CA/CN=unica service", "-addext", "subjectAltName=IP:127.0.0.1")
    j.ok("cert", "issue", "--ca", "root", "--profile", "tls-server", "--csr", str(csr), "--out", str(pem))
    (j.dir / "root.pem").write_text(j.ok("ca", "export", "root").stdout)
    profile = j.dir / f"{SHORT_PROFILE}.toml"
    import unica.policies

    builtin = Path(unica.policies.__file__).parent / "builtin" / "operator.toml"
    text = re.sub(r'(?m)^validity = .*$', f'validity = "{SHORT_SECONDS}s"', builtin.read_text())
    profile.write_text(text.replace("A CA operator's card", "An operator's card for a few seconds (tests)"))
    j.ok("profile", "add", str(profile))
    # a client certificate that expires a few seconds after it is issued (``expired`` in the copies)
    short = issue_client_cert(j, "Shortlived", profile=SHORT_PROFILE, who=None)
    for src, name in ((short.cert, "expired.pem"), (short.key, "expired.key")):
        shutil.copy(src, j.dir / name)
    return j


def copy_service_ca(template: JointCA, base: Path) -> JointCA:
    """A copy of the service CA under ``base`` (own home, tokens, certificates and TLS files)."""
    j = copy_joint_ca(template, base)
    for name in ("server.key", "server.pem", "root.pem", "expired.pem", "expired.key"):
        shutil.copy(template.dir / name, base / name)
    return j


@dataclass
class Service:
    joint: JointCA
    proc: subprocess.Popen
    host: str
    port: int
    url: str
    ca_pem: Path
    env: dict
    log: Path
    tls: bool = True
    extra: dict = field(default_factory=dict)

    def __getattr__(self, name):  # site.ok(...), site.sql(...), site.card(...): the joint CA's
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.joint, name)

    @property
    def home(self) -> Path:
        return self.joint.home

    def ssl_context(self, cert: ClientCert | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_pem))
        if cert is not None:
            ctx.load_cert_chain(str(cert.cert), str(cert.key))
        return ctx

    def connection(self, cert: ClientCert | None = None, timeout: float = 30) -> http.client.HTTPConnection:
        if not self.tls:
            return http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        return http.client.HTTPSConnection(self.host, self.port, context=self.ssl_context(cert), timeout=timeout)

    def request(self, method: str, path: str, body=None, headers: dict | None = None,
                cert: ClientCert | None = None, timeout: float = 30) -> Reply:
        """One request on a new connection; a dict/list body is sent as JSON."""
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        conn = self.connection(cert, timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def curl(self, path: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["curl", "-sS", "--cacert", str(self.ca_pem), *args, self.url + path],
                              capture_output=True, timeout=timeout)

    def client_cert(self, cn: str, *, profile: str = "operator", subject: str | None = None) -> ClientCert:
        return issue_client_cert(self.joint, cn, profile=profile, subject=subject)

    def add_operator(self, name: str, cert: ClientCert, *args: str) -> None:
        """``unica operator add NAME --cert FILE ARGS... --as alice`` (e.g. ``--role ra-officer --office customs``)."""
        self.joint.ok("operator", "add", name, "--cert", str(cert.cert), *args, who="alice")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_service(j: JointCA, *args: str, workers: int = 1, env: dict | None = None, tls: bool = True,
                  timeout: float = 60) -> Service:
    """Start ``unica serve`` on a free port of 127.0.0.1 for ``j`` and wait until /readyz answers."""
    e = {**j.env, "UNICA_PASSPHRASE": TLS_PASSPHRASE, **(env or {})}
    log = j.dir / f"serve-{uuid.uuid4().hex[:6]}.log"
    argv = [sys.executable, "-m", "unica", "serve", "--host", "127.0.0.1", "--port", "0", "--workers", str(workers)]
    if tls:
        argv += ["--tls-cert", str(j.dir / "server.pem"), "--tls-key", str(j.dir / "server.key")]
    if "--rate" not in args:  # tests send bursts from one address; the rate limit has its own tests
        argv += ["--rate", "500", "--burst", "1000"]
    with open(log, "wb") as out:
        proc = subprocess.Popen([*argv, *args], env=_env(e), stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    deadline = time.monotonic() + timeout
    port = None
    while time.monotonic() < deadline:
        m = re.search(r"unica service on https?://127\.0\.0\.1:(\d+)/", log.read_text(errors="replace"))
        if m:
            port = int(m.group(1))
            break
        if proc.poll() is not None:
            raise AssertionError(f"unica serve exited {proc.returncode}: {log.read_text(errors='replace')}")
        time.sleep(0.05)
    assert port, f"unica serve did not start: {log.read_text(errors='replace')}"
    svc = Service(j, proc, "127.0.0.1", port, f"{'https' if tls else 'http'}://127.0.0.1:{port}",
                  j.dir / "root.pem", e, log, tls)
    while time.monotonic() < deadline:
        try:
            if svc.request("GET", "/readyz", timeout=5).status == 200:
                return svc
        except (OSError, http.client.HTTPException):
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    svc.stop()
    raise AssertionError(f"unica serve is not ready: {log.read_text(errors='replace')}")


@pytest.fixture(scope="session")
def _service_template(tmp_path_factory) -> JointCA:
    # the TLS server certificate is issued before the first operator (then no office would have
    # tls-server among its profiles); client certificates later, by alice under CA-level profiles
    return bootstrap(_add_tls_files(build_joint_ca(tmp_path_factory.mktemp("service-ca"))))


@pytest.fixture
def service_ca(tmp_path, _service_template) -> JointCA:
    """A fresh copy of the service CA (TLS files included), no service running."""
    return copy_service_ca(_service_template, tmp_path / "ca")


@pytest.fixture
def serve(tmp_path, _service_template):
    """``serve(*extra_args, ca=None, workers=1, env=None, tls=True)`` -> a started :class:`Service`."""
    started: list[Service] = []

    def start(*args: str, ca: JointCA | None = None, workers: int = 1, env: dict | None = None,
              tls: bool = True) -> Service:
        j = ca or copy_service_ca(_service_template, tmp_path / f"ca-{len(started)}")
        svc = start_service(j, *args, workers=workers, env=env, tls=tls)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory, _service_template):
    """One running service (one worker) on this module's own copy of the CA."""
    j = copy_service_ca(_service_template, tmp_path_factory.mktemp("service"))
    svc = start_service(j)
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def site(service):
    """The module's service, under the name the EST tests use."""
    return service


@pytest.fixture(scope="module")
def api_service(service):
    """The module's service, under the name the API tests use."""
    return service


def expired_cert(j: JointCA) -> ClientCert:
    """The template's short-lived client certificate (expired once SHORT_SECONDS have passed)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = x509.load_pem_x509_certificate((j.dir / "expired.pem").read_bytes())
    import datetime as dt

    wait = (cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)).total_seconds() + 1.5
    if wait > 0:
        time.sleep(wait)
    return ClientCert(j.dir / "expired.pem", j.dir / "expired.key", format(cert.serial_number, "x"),
                      cert.public_bytes(Encoding.DER))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OCSPResponder:
    """``unica ocsp serve`` over a CA's database (``env``), in the background, on a free port."""

    def __init__(self, env: dict, work: Path, issuer_pem: Path):
        self.issuer_pem = issuer_pem
        self.port = free_port()
        full = {**os.environ, **{k: v for k, v in env.items() if v is not None}}
        self.err = work / f"ocsp-{self.port}.err"
        with self.err.open("w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "unica", "ocsp", "serve", "--port", str(self.port),
                                          "--ca", "root", "--no-access-log"], env=full, stdout=subprocess.DEVNULL,
                                         stderr=err)
        self.url = f"http://127.0.0.1:{self.port}/"
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.err.read_text()
            try:
                with urllib.request.urlopen(self.url + "healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                assert time.monotonic() < deadline, self.err.read_text()
                time.sleep(0.1)

    def ask(self, cert: Path) -> str:
        """What ``openssl ocsp`` says of ``cert`` (stdout and stderr)."""
        p = subprocess.run(["openssl", "ocsp", "-issuer", str(self.issuer_pem), "-cert", str(cert), "-url", self.url,
                            "-CAfile", str(self.issuer_pem), "-no_nonce"], capture_output=True, text=True, timeout=60)
        return p.stdout + p.stderr

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
