"""Operating the OCSP responder (issue #11, items 2, 11 and 16), with the real `unica` and
`openssl ocsp`:

- a lookup-only node (``--no-signer-keys``) never opens a key, whatever PIN or passphrase
  the environment holds (a wrong UNICA_PIN for the signer's token does not matter), and what
  it has no pre-signed response for gets ``unauthorized`` (RFC 5019 2.2.3);
- ``ocsp status`` reports mode, signer, validity, pre-signed coverage and the next refresh;
  ``ocsp configure`` prints effective values, defaults filled in;
- the responder logs one line per request (``--no-access-log``: none) and says at start
  which CAs it serves and which have no signer;
- :mod:`unica.ocsp` imports nothing of :mod:`unica.ca`, at import or on its serve path.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import TEST_PIN, assert_one_line_error

ROOT = Path(__file__).resolve().parents[2]
WRONG = {"UNICA_PIN": "0000-not-the-pin", "UNICA_PASSPHRASE": "not the passphrase"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """``unica ocsp serve`` in the background; its stderr goes to a file (read with :meth:`log`)."""

    def __init__(self, pki, *args, env: dict | None = None):
        self.port = _free_port()
        full = dict(os.environ)
        full.update({k: v for k, v in pki.env.items() if v is not None})
        full.pop("UNICA_DB", None)
        full.update(env or {})
        self.err = pki.tmp / f"serve-{self.port}.err"
        with self.err.open("w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "unica", "ocsp", "serve", "--port", str(self.port),
                                          *args], env=full, stdout=subprocess.DEVNULL, stderr=err)
        self.url = f"http://127.0.0.1:{self.port}/"
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("responder exited: " + self.log())
            try:
                with urllib.request.urlopen(self.url + "healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError("responder did not come up: " + self.log())

    def log(self) -> str:
        return self.err.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _pem(pki, serial: str) -> Path:
    path = pki.tmp / f"{serial}.pem"
    if not path.exists():
        path.write_text(pki.run("cert", "export", serial).stdout)
    return path


def _ask(pki, node: Node, serial: str, *, nonce: bool = False) -> str:
    chain = pki.tmp / "chain.pem"
    if not chain.exists():
        chain.write_text(pki.export("sub").read_text() + pki.export("root").read_text())
    r = subprocess.run(["openssl", "ocsp", "-issuer", str(pki.tmp / "sub.pem"), "-cert", str(_pem(pki, serial)),
                        "-url", node.url, "-CAfile", str(chain), *([] if nonce else ["-no_nonce"])],
                       capture_output=True, text=True, timeout=30)
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def ops(module_pki):
    """The issuing CA with its OCSP signer key on a PKCS#11 token, one certificate with a
    pre-signed response and one issued after the pre-signing (none stored for it)."""
    pki = module_pki
    pki.run("ocsp", "signer", "--ca", "sub", "--token", "unica-aux")
    pki.presigned = pki.issue("sub")["serial"]
    pki.run("ocsp", "presign")
    pki.later = pki.issue("sub")["serial"]
    pki.export("sub")
    return pki


def test_lookup_only_node_opens_no_key_whatever_the_environment_holds(ops):
    pki = ops
    env = {**pki.env, **WRONG}
    # the control: a node that may open keys does use the environment's PIN, and fails on the wrong one
    r = pki.unica("ocsp", "serve", "--ca", "sub", "--port", "0", env=env, timeout=120)
    assert r.returncode != 0 and "unica: error:" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    # the lookup-only node never logs in: the wrong PIN and passphrase do not matter
    node = Node(pki, "--no-signer-keys", "--ca", "sub", env=WRONG)
    try:
        out = _ask(pki, node, pki.presigned)
        assert "Response verify OK" in out and ": good" in out, out
        # no stored response: a live answer would need the key, which this node does not hold
        for nonce in (False, True):
            out = _ask(pki, node, pki.later, nonce=nonce)
            assert "unauthorized" in out.lower() and ": good" not in out, out
        time.sleep(0.3)
        log = node.log()
    finally:
        node.stop()
    assert "CA sub: presigned, no signer: pre-signed responses only" in log, log
    # one access-log line per request
    hit = [ln for ln in log.splitlines() if f"serial={pki.presigned.lower()}" in ln]
    miss = [ln for ln in log.splitlines() if f"serial={pki.later.lower()}" in ln]
    assert len(hit) == 1 and len(miss) == 2, log
    assert "POST / ca=sub" in hit[0] and "http=200 ocsp=successful cache=hit signed=-" in hit[0], hit
    assert all("ocsp=unauthorized cache=miss signed=-" in ln for ln in miss), miss
    assert "Traceback" not in log


def test_signing_node_says_what_it_serves_and_logs_live_answers(ops):
    pki = ops
    node = Node(pki, "--ca", "sub", "--refresh-interval", "0")
    try:
        out = _ask(pki, node, pki.later, nonce=True)
        assert "Response verify OK" in out and ": good" in out, out
        time.sleep(0.3)
        log = node.log()
    finally:
        node.stop()
    status = json.loads(pki.run("ocsp", "status", "--ca", "sub", "--json").stdout)[0]
    assert f"CA sub: presigned, signer {status['signer']['serial']} valid until {status['signer']['not_after']}" \
        in log, log
    line, = [ln for ln in log.splitlines() if f"serial={pki.later.lower()}" in ln]
    # a nonce request to a pre-signed CA with a signer is answered live (live_nonce defaults on)
    assert "ocsp=successful" in line and "signed=live" in line and line.rstrip().endswith("ms"), line


def test_no_access_log(ops):
    pki = ops
    node = Node(pki, "--no-signer-keys", "--ca", "sub", "--no-access-log")
    try:
        assert ": good" in _ask(pki, node, pki.presigned)
        time.sleep(0.3)
        log = node.log()
    finally:
        node.stop()
    assert "serial=" not in log and "CA sub: presigned, no signer" in log, log


def test_status_reports_signer_coverage_and_next_refresh(ops):
    pki = ops
    states = {s["ca"]: s for s in json.loads(pki.run("ocsp", "status", "--json").stdout)}
    assert set(states) == {"root", "sub"}
    sub, root = states["sub"], states["root"]
    assert sub["mode"] == "presigned" and sub["validity_hours"] == 96 and sub["live_validity_minutes"] == 5
    assert sub["live_nonce"] is True and "validity_hours" in sub["defaults"]
    signer = sub["signer"]
    assert signer["valid"] is True and signer["key_uri"].startswith("pkcs11:")
    assert "token=unica-aux" in signer["key_uri"]
    # the issued certificates and the signer's own; one issued after the pre-signing has none yet
    p = sub["presigned"]
    assert p["certificates"] == p["stored"] + 1 and p["missing"] == 1 and p["fresh"] == p["stored"] >= 2, p
    now = dt.datetime.now(dt.timezone.utc)
    assert dt.datetime.fromisoformat(sub["next_refresh"].replace("Z", "+00:00")) <= now  # something is missing
    assert root.get("signer") is None and root.get("next_refresh") is None  # --json leaves out what has no value
    human = pki.run("ocsp", "status").stdout
    assert "CA sub" in human and f"{p['stored']}/{p['certificates']} certificates have a response" in human
    assert "next refresh: due now" in human and "never: no signer to pre-sign with" in human, human
    # once everything is signed, the next refresh is when the oldest response passes half its validity
    pki.run("ocsp", "presign", "--ca", "sub")
    sub = json.loads(pki.run("ocsp", "status", "--ca", "sub", "--json").stdout)[0]
    p = sub["presigned"]
    assert p["missing"] == 0 and p["fresh"] == p["certificates"], p
    oldest = dt.datetime.fromisoformat(p["oldest_produced_at"].replace("Z", "+00:00"))
    assert sub["next_refresh"] == (oldest + dt.timedelta(hours=48)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert_one_line_error(pki.unica("ocsp", "status", "--ca", "nope", env=pki.env), "no CA named 'nope'")


def test_configure_shows_effective_values(ops):
    pki = ops
    shown = json.loads(pki.run("ocsp", "configure", "--ca", "root", "--json").stdout)
    assert shown == {"ca": "root", "mode": "presigned", "live_nonce": False, "validity_hours": 96.0,
                     "live_validity_minutes": 5.0,
                     "defaults": ["live_nonce", "validity_hours", "live_validity_minutes"]}
    out = pki.run("ocsp", "configure", "--ca", "root", "--validity", "36h", "--no-live-nonce").stdout
    assert out.strip() == "CA root: mode=presigned live_nonce=no validity=36h live_validity=5m (default)"
    assert "None" not in pki.run("ocsp", "configure", "--ca", "sub").stdout


# --- issue #11, 16: the responder stands beside the CA, not on it --------------------------------


def _ca_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        found += [f"{path.name}:{node.lineno} {n}" for n in names if n == "unica.ca" or n.startswith("unica.ca.")]
    return found


def test_ocsp_package_has_no_import_of_unica_ca():
    found = [hit for p in sorted((ROOT / "unica" / "ocsp").rglob("*.py")) for hit in _ca_imports(p)]
    assert found == []


_SERVE_PATH = """
import json, sys
import unica.ocsp, unica.ocsp.http, unica.ocsp.httpserver, unica.ocsp.server, unica.ocsp.service, unica.ocsp.dbsource


def ca_modules():
    return sorted(m for m in sys.modules if m == "unica.ca" or m.startswith("unica.ca."))


print(json.dumps(ca_modules()), flush=True)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from unica.ocsp.service import DBResponderApp, ocsp_status, presign, served_cas
from unica.store import open_store

store = open_store(None)
app = DBResponderApp(None, ["sub"], load_signers=False)
app.build()
issuer = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
cert = x509.load_pem_x509_certificate(open(sys.argv[2], "rb").read())
req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
status, headers, body = app._app.handle("POST", b"/", req.public_bytes(serialization.Encoding.DER))
assert ocsp.load_der_ocsp_response(body).certificate_status == ocsp.OCSPCertStatus.GOOD
cas = served_cas(store, ["sub"], pin=sys.argv[3])  # the signer key on the token
presign(store, cas)
ocsp_status(store)
print(json.dumps(ca_modules()))
"""


def test_serve_path_loads_no_unica_ca_module(ops):
    pki = ops
    env = {k: v for k, v in {**os.environ, **pki.env}.items() if v is not None}
    env.pop("UNICA_DB", None)
    r = subprocess.run([sys.executable, "-c", _SERVE_PATH, str(pki.export("sub")), str(_pem(pki, pki.presigned)),
                        TEST_PIN], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    lines = r.stdout.splitlines()
    assert lines and json.loads(lines[0]) == [], r.stdout + r.stderr  # after importing the package
    assert r.returncode == 0, r.stderr
    assert json.loads(lines[-1]) == []  # after building, serving, pre-signing and reporting
