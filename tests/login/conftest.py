"""A CA and an enterprise's card for the card-login tests, built through the CLI; the agent.

``login_ca`` (session, per xdist worker): its own UNICA_HOME and SoftHSM2 token directory; CA
``root`` on an HSM token; a card token holding a P-256 key labelled ``login`` and the certificate
``root`` issued for it under the built-in ``enterprise-auth`` profile (``unica token enroll``:
key made on the card, CSR signed on it). :class:`LoginCA` has ``run``/``ok`` (the CLI against it),
``store()`` (opened in this process), ``card_uri``, ``card_cert`` (DER), ``software_cert(...)``
(an openssl key and a certificate issued by ``root``: for revocation and refusals without
touching the card).

``agent`` (module): ``unica agent`` serving that card as a subprocess, on a free port, allowing
:data:`PORTAL` and :data:`OTHER_PORTAL`; :class:`Agent` has ``request(...)``, ``sign(...)``,
``stop()`` and the texts it wrote.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import TEST_PIN, TEST_SO_PIN, run_unica
from tests.service.conftest import Reply

#: the portal's origin in these tests (no portal runs: the library is called in-process)
PORTAL = "https://127.0.0.1:8443"
#: a second origin the agent allows (a portal on a developer's machine)
OTHER_PORTAL = "http://localhost:8080"
#: an origin the agent does not allow
FOREIGN = "https://evil.example"

USCC = "91350100M000100Y43"
ORG = "示例科技有限公司"


def _env(extra: dict) -> dict:
    env = dict(os.environ)
    env.update({k: v for k, v in extra.items() if v is not None})
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
    return env


@dataclass
class LoginCA:
    dir: Path
    env: dict
    tag: str
    card_token: str
    card_uri: str
    card_cert: bytes = b""
    _stores: list = field(default_factory=list)

    def run(self, *args, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
        return run_unica(*args, env={**self.env, **(env or {})}, **kw)

    def ok(self, *args, **kw) -> subprocess.CompletedProcess:
        p = self.run(*args, **kw)
        assert p.returncode == 0, p.stdout + p.stderr
        return p

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.dir / 'home' / 'unica.db'}"

    def store(self):
        from unica.store import open_store

        s = open_store(self.db_url)
        self._stores.append(s)
        return s

    def init_token(self, label: str) -> None:
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", TEST_PIN,
                        "--so-pin", TEST_SO_PIN], check=True, capture_output=True,
                       env=_env({"SOFTHSM2_CONF": self.env["SOFTHSM2_CONF"]}))

    def software_cert(self, cn: str, *, profile: str = "enterprise-auth", key: str = "ec",
                      subject: str | None = None, extra: tuple = ()) -> tuple[Path, Path, bytes]:
        """An openssl key (``ec``: P-256, ``ec384``, ``rsa``) and a certificate issued by ``root``
        under ``profile``: (key PEM path, certificate PEM path, certificate DER)."""
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        tag = f"{cn}-{uuid.uuid4().hex[:6]}"
        keyf, csr, pem = self.dir / f"{tag}.key", self.dir / f"{tag}.csr", self.dir / f"{tag}.pem"
        newkey = {"ec": ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
                  "ec384": ["ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
                  "rsa": ["rsa:2048"]}[key]
        subprocess.run(["openssl", "req", "-new", "-newkey", *newkey, "-nodes", "-keyout", str(keyf), "-out",
                        str(csr), "-utf8", "-subj",
                        subject or f"/C=CN/O={ORG}/organizationIdentifier={USCC}/CN={cn}", *extra],
                       check=True, capture_output=True)
        self.ok("cert", "issue", "--ca", "root", "--profile", profile, "--csr", str(csr), "--out", str(pem))
        return keyf, pem, x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(Encoding.DER)

    def close(self) -> None:
        for s in self._stores:
            s.dispose()


@pytest.fixture(scope="session")
def login_ca(tmp_path_factory) -> LoginCA:
    base = tmp_path_factory.mktemp("login-ca")
    tokens = base / "tokens"
    tokens.mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    tag = uuid.uuid4().hex[:6]
    env = {"UNICA_HOME": str(base / "home"), "UNICA_PIN": TEST_PIN, "UNICA_OPERATOR": None, "UNICA_DB": None,
           "SOFTHSM2_CONF": str(conf)}
    card = f"{tag}-card"
    ca = LoginCA(base, env, tag, card, f"pkcs11:token={card};object=login")
    ca.init_token(f"{tag}-hsm")
    ca.init_token(card)
    ca.ok("init")
    ca.ok("ca", "create-root", "root", "--subject", "C=CN,O=Port Joint CA,CN=Port Root", "--key-type", "ec-p256",
          "--token", f"{tag}-hsm")
    ca.ok("token", "enroll", "--token", card, "--label", "login", "--key-type", "ec-p256",
          "--subject", f"C=CN,O={ORG},CN=张三", "--uscc", USCC, "--ca", "root", "--profile", "enterprise-auth")
    serial = ca.ok("cert", "list", "--ca", "root", "--json")
    rows = [r for r in json.loads(serial.stdout) if r.get("profile") == "enterprise-auth"]
    assert len(rows) == 1, serial.stdout
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = base / "card.pem"
    ca.ok("cert", "export", rows[0]["serial"], "--ca", "root", "--out", str(pem))
    ca.card_cert = x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(Encoding.DER)
    (base / "root.pem").write_text(ca.ok("ca", "export", "root").stdout)
    yield ca
    ca.close()


class Agent:
    """``unica agent`` as a subprocess: ``url``, ``port``, ``stdout``/``stderr`` (read after stop)."""

    def __init__(self, ca: LoginCA, *args: str, env: dict | None = None):
        self.err_path = ca.dir / f"agent-{uuid.uuid4().hex[:6]}.err"
        argv = [sys.executable, "-m", "unica", "agent", "--key", ca.card_uri, "--port", "0",
                "--allow-origin", PORTAL, "--allow-origin", OTHER_PORTAL, *args]
        self._err = self.err_path.open("wb")
        self.proc = subprocess.Popen(argv, env=_env({**ca.env, **(env or {})}), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._err)
        first: list[bytes] = []
        reader = threading.Thread(target=lambda: first.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(60)
        line = first[0].decode() if first else ""
        if not line.startswith("unica agent on http://127.0.0.1:"):
            self.stop()
            raise AssertionError(f"unica agent did not start: {line!r} {self.err_path.read_text(errors='replace')}")
        self.first_line = line
        self.url = line.split(" on ", 1)[1].strip()
        self.port = int(self.url.rstrip("/").rsplit(":", 1)[1])
        self.stdout = line

    def request(self, method: str, path: str, body=None, headers: dict | None = None) -> Reply:
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def sign(self, text: str, origin: str = PORTAL) -> Reply:
        return self.request("POST", "/v1/sign", {"challenge": text}, {"Origin": origin})

    def stop(self) -> tuple[str, str]:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        rest = self.proc.stdout.read() if self.proc.stdout else b""
        self.stdout += rest.decode(errors="replace")
        self._err.close()
        return self.stdout, self.err_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def agent(login_ca):
    a = Agent(login_ca)
    yield a
    a.stop()


def wait_until(pred, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()
