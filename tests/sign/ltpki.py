"""A unica CA for the long-term signature tests, with everything a B-LT signature fetches served
on 127.0.0.1, and an independent RFC 3161 TSA.

- ``LTHome``: a unica home with CA ``root`` (file key) whose certificates point at a CRL URL
  (served from the home's CRL directory by :class:`FileServer`) and at ``unica ocsp serve``
  (the real responder, with a delegated signer); operator profiles ``sign-short`` (an
  enterprise-sign certificate for 1 day) and ``ts-short`` (a TSA certificate for 2 days) beside
  the built-in ``timestamping`` (5 years), so a test can ask for a time after some of them
  expire; a signer key on a SoftHSM2 token with its certificate issued by ``unica issue``.
- ``OpenSSLTSA``: ``openssl ts -reply`` behind a ThreadingHTTPServer: a TSA unica did not write,
  whose certificate unica issued under a timestamping profile.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from tests.conftest import run_unica
from tests.token.pki import init_token_in_process, new_token_label

PASSPHRASE = "long-term-passphrase-16"
TSA_POLICY = "1.2.156.9999.16.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


class FileServer:
    """Serves the files of one directory over HTTP GET on 127.0.0.1 (the CA's CRL URL)."""

    def __init__(self, directory: Path, port: int = 0):
        self.directory = directory
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                p = outer.directory / self.path.lstrip("/")
                if not p.is_file():
                    self.send_error(404)
                    return
                body = p.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/pkix-crl")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class OpenSSLTSA:
    """``openssl ts -reply`` over HTTP: POST application/timestamp-query -> timestamp-reply."""

    def __init__(self, directory: Path, cert_pem: Path, key_pem: Path, chain_pem: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        (directory / "serial").write_text("01\n")
        self.config = directory / "tsa.cnf"
        self.config.write_text(f"""[ tsa ]
default_tsa = unica_test_tsa

[ unica_test_tsa ]
dir = {directory}
serial = $dir/serial
crypto_device = builtin
signer_cert = {cert_pem}
certs = {chain_pem}
signer_key = {key_pem}
signer_digest = sha256
default_policy = {TSA_POLICY}
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
""")
        self.requests = 0
        lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                if n > 1 << 16:
                    self.send_error(413)
                    return
                body = self.rfile.read(n)
                with lock, tempfile.TemporaryDirectory(dir=outer.dir) as tmp:
                    q, r = Path(tmp) / "q.tsq", Path(tmp) / "r.tsr"
                    q.write_bytes(body)
                    p = run("openssl", "ts", "-reply", "-config", outer.config, "-queryfile", q, "-out", r)
                    resp = r.read_bytes() if p.returncode == 0 and r.exists() else None
                    outer.requests += 1
                if resp is None:
                    self.send_error(500)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(resp)))
                self.end_headers()
                self.wfile.write(resp)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class DummyTSA:
    """pyHanko's DummyTimeStamper behind a ThreadingHTTPServer."""

    def __init__(self, cert_pem: Path, key_pem: Path):
        from asn1crypto import keys, tsp
        from asn1crypto import x509 as ax
        from cryptography.hazmat.primitives import serialization
        from pyhanko.sign.timestamps import DummyTimeStamper

        cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
        key = serialization.load_pem_private_key(key_pem.read_bytes(), None)
        stamper = DummyTimeStamper(
            tsa_cert=ax.Certificate.load(cert.public_bytes(serialization.Encoding.DER)),
            tsa_key=keys.PrivateKeyInfo.load(key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())))

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(min(int(self.headers.get("Content-Length", "0")), 1 << 16))
                resp = stamper.request_tsa_response(tsp.TimeStampReq.load(body)).dump()
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(resp)))
                self.end_headers()
                self.wfile.write(resp)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class UnicaTSA:
    """``unica tsa serve --port 0`` in a subprocess; ``url`` from the line it prints."""

    def __init__(self, h: "LTHome", clock: Path):
        env = {k: v for k, v in os.environ.items() if k not in h.env}
        env.update({k: v for k, v in h.env.items() if v is not None})
        self.proc = subprocess.Popen([sys.executable, "-m", "unica", "tsa", "serve", "--port", "0", "--unit", "tsa1",
                                      "--clock-status", str(clock)], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.url = None
        self.lines: list[str] = []
        seen = threading.Event()

        def read():
            import re

            for line in self.proc.stdout:
                self.lines.append(line)
                m = re.match(r"unica tsa on (http://127\.0\.0\.1:\d+/)", line)
                if m:
                    self.url = m.group(1)
                    seen.set()
            seen.set()

        threading.Thread(target=read, daemon=True).start()
        seen.wait(60)
        if self.url is None:
            self.close()
            raise RuntimeError("unica tsa serve did not start:\n" + "".join(self.lines))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class LTHome:
    dir: Path
    env: dict
    crl_port: int
    ocsp_port: int
    root_pem: Path
    crl_dir: Path
    files: FileServer | None = None
    responder: subprocess.Popen | None = None
    tsas: dict = field(default_factory=dict)

    def run(self, *args, env=None):
        return run_unica(*args, env={**self.env, **(env or {})})

    def ok(self, *args, env=None):
        p = self.run(*args, env=env)
        assert p.returncode == 0, p.stdout + p.stderr
        return p

    def publish_crl(self) -> Path:
        """A fresh CRL of the root at its CRL URL (valid 60 days: current at a time a test asks
        about weeks ahead)."""
        out = self.crl_dir / "root.crl"
        self.ok("crl", "generate", "--ca", "root", "--validity", "60d", "--out", str(out))
        return out

    def issue_openssl_key(self, name: str, profile: str, subject: str, rsa: bool = False) -> tuple[Path, Path]:
        """An openssl key + CSR, the certificate from ``unica issue`` under ``profile``."""
        key, csr, cert = self.dir / f"{name}.key", self.dir / f"{name}.csr", self.dir / f"{name}.pem"
        alg = ["-newkey", "rsa:2048"] if rsa else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        p = run("openssl", "req", "-new", *alg, "-nodes", "-keyout", key, "-out", csr, "-subj", subject, "-utf8")
        assert p.returncode == 0, p.stderr
        self.ok("issue", "--ca", "root", "--profile", profile, "--csr", str(csr), "--out", str(cert))
        return cert, key

    def tsa(self, name: str, profile: str = "timestamping") -> OpenSSLTSA:
        if name not in self.tsas:
            cert, key = self.issue_openssl_key(name, profile, f"/C=CN/O=unica 测试/CN=Test TSA {name}")
            self.tsas[name] = OpenSSLTSA(self.dir / f"tsa-{name}", cert, key, self.root_pem)
        return self.tsas[name]

    def tsa_without_eku(self) -> "DummyTSA":
        """A TSA whose certificate (enterprise-sign: no timeStamping EKU) must not be trusted for
        time-stamps: pyHanko's DummyTimeStamper, which signs with whatever it is given."""
        if "no-eku" not in self.tsas:
            cert, key = self.issue_openssl_key(
                "no-eku", "enterprise-sign", "/C=CN/O=示例科技有限公司/organizationIdentifier=91350100M000100Y43/CN=Not a TSA",
                rsa=True)
            self.tsas["no-eku"] = DummyTSA(cert, key)
        return self.tsas["no-eku"]

    def unica_tsa(self) -> "UnicaTSA":
        """unica's own TSA: unit ``tsa1`` (key in an encrypted file, certificate from ``root``
        under the built-in timestamping profile) served by the real ``unica tsa serve``."""
        if "unica" not in self.tsas:
            self.ok("tsa", "unit", "add", "tsa1", "--ca", "root", "--policy", TSA_POLICY)
            clock = self.dir / "clock-status"
            clock.write_text("synced offset=0.0002\n")
            self.tsas["unica"] = UnicaTSA(self, clock)
        return self.tsas["unica"]

    def signer(self, *, profile: str = "sign-short", label: str = "seal") -> "Signer":
        token = new_token_label("lt")
        init_token_in_process(token)
        self.ok("token", "keygen", "--token", token, "--label", label, "--type", "ec-p256")
        uri = f"pkcs11:token={token};object={label}"
        csr = self.dir / f"{token}.csr"
        self.ok("token", "csr", "--key", uri, "--subject", "C=CN,O=示例科技有限公司,CN=张三", "--uscc",
                "91350100M000100Y43", "--out", str(csr))
        cert = self.dir / f"{token}.pem"
        self.ok("issue", "--ca", "root", "--profile", profile, "--csr", str(csr), "--out", str(cert))
        self.ok("token", "import-cert", "--token", token, str(cert), "--chain", str(self.root_pem))
        return Signer(uri, cert, x509.load_pem_x509_certificate(cert.read_bytes()))

    def close(self) -> None:
        for t in self.tsas.values():
            t.close()
        if self.files is not None:
            self.files.close()
        if self.responder is not None:
            self.responder.terminate()
            self.responder.wait(timeout=30)


@dataclass(frozen=True)
class Signer:
    key_uri: str
    cert_file: Path
    cert: x509.Certificate

    @property
    def serial_hex(self) -> str:
        return format(self.cert.serial_number, "x")


def _profile(base: Path, name: str, builtin: str, validity: str) -> Path:
    """Operator profile ``name``: the built-in ``builtin`` with another validity."""
    p = base / f"{name}.toml"
    src = (Path(__file__).resolve().parents[2] / "unica" / "policies" / "builtin" / f"{builtin}.toml").read_text()
    lines = [f'validity = "{validity}"' if ln.startswith("validity") else ln for ln in src.splitlines()]
    p.write_text("\n".join(lines) + "\n")
    return p


def make_home(directory: Path) -> LTHome:
    crl_port, ocsp_port = free_port(), free_port()
    crl_dir = directory / "crl-www"
    crl_dir.mkdir(parents=True)
    h = LTHome(dir=directory, env={"UNICA_HOME": str(directory / "home"), "UNICA_PASSPHRASE": PASSPHRASE,
                                   "UNICA_DB": None, "UNICA_TSA_URL": None},
               crl_port=crl_port, ocsp_port=ocsp_port, root_pem=directory / "root.pem", crl_dir=crl_dir)
    h.ok("init")
    h.ok("ca", "create-root", "root", "--subject", "C=CN,O=示例电子口岸认证中心,CN=LT Test Root", "--key-type", "ec-p256",
         "--crl-url", f"http://127.0.0.1:{crl_port}/root.crl", "--ocsp-url", f"http://127.0.0.1:{ocsp_port}/")
    h.ok("ca", "export", "root", "--out", str(h.root_pem))
    for name, builtin, validity in (("sign-short", "enterprise-sign", "1d"), ("ts-short", "timestamping", "2d")):
        h.ok("profile", "add", str(_profile(directory, name, builtin, validity)))
    h.ok("ocsp", "signer", "--ca", "root")
    h.publish_crl()
    h.files = FileServer(crl_dir, crl_port)
    env = {k: v for k, v in os.environ.items() if k not in h.env}
    env.update({k: v for k, v in h.env.items() if v is not None})
    h.responder = subprocess.Popen([sys.executable, "-m", "unica", "ocsp", "serve", "--port", str(ocsp_port),
                                    "--ca", "root"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{ocsp_port}/healthz", timeout=1)
            break
        except OSError:
            if h.responder.poll() is not None:
                raise RuntimeError(f"unica ocsp serve exited: {h.responder.stderr.read().decode()}")
            time.sleep(0.1)
    return h


