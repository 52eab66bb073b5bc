"""Helpers of the backup tests: fresh databases, CSRs, the responder, CRL numbers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from cryptography import x509

from tests.conftest import run_unica

ORG_ID = "91350100M000100Y43"


def new_pg_database(base_url: str) -> str:
    """A fresh, empty database in the throwaway cluster (what a DBA's CREATE DATABASE gives)."""
    from sqlalchemy import create_engine, text

    name = "unica_" + uuid.uuid4().hex[:10]
    eng = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as c:
            c.execute(text(f"CREATE DATABASE {name}"))
    finally:
        eng.dispose()
    return base_url.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(base_url: str, url: str) -> None:
    from sqlalchemy import create_engine, text

    name = url.rsplit("/", 1)[1]
    eng = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as c:
            c.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    finally:
        eng.dispose()


def scalar(url: str, sql: str):
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    try:
        with eng.connect() as c:
            return c.execute(text(sql)).scalar()
    finally:
        eng.dispose()


class Site:
    """One unica home (and database) driven through the CLI."""

    def __init__(self, home: Path, work: Path, db: str | None = None, extra_env: dict | None = None):
        self.home = home
        self.work = work
        self.db = db
        self.env = {"UNICA_HOME": str(home), "UNICA_DB": db, **(extra_env or {})}

    @property
    def url(self) -> str:
        return self.db or f"sqlite:///{self.home / 'unica.db'}"

    def run(self, *args, **kw):
        return run_unica(*args, env=self.env, **kw)

    def ok(self, *args, **kw):
        p = self.run(*args, **kw)
        assert p.returncode == 0, f"unica {' '.join(args)}: {p.stdout}{p.stderr}"
        return p

    def csr(self, cn: str) -> Path:
        path = self.work / f"{uuid.uuid4().hex[:8]}.csr"
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", str(path.with_suffix(".key")), "-utf8", "-out", str(path),
                        "-subj", f"/C=CN/O=示例贸易有限公司/organizationIdentifier={ORG_ID}/CN={cn}"],
                       check=True, capture_output=True)
        return path

    def issue(self, ca: str, cn: str) -> dict:
        d = json.loads(self.ok("issue", "--ca", ca, "--profile", "enterprise-auth", "--csr", str(self.csr(cn)),
                               "--json").stdout)
        pem = self.work / f"{d['serial']}.pem"
        pem.write_text(self.ok("cert", "export", d["serial"]).stdout)
        d["pem"] = pem
        return d

    def crl(self, ca: str, name: str) -> int:
        out = self.work / name
        self.ok("crl", "generate", "--ca", ca, "--out", str(out))
        return crl_number(out)

    def export(self, ca: str) -> Path:
        path = self.work / f"{ca}-ca.pem"
        path.write_text(self.ok("ca", "export", ca).stdout)
        return path


def crl_number(path: Path) -> int:
    crl = x509.load_der_x509_crl(path.read_bytes())
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Responder:
    """``unica ocsp serve`` of a site in the background."""

    def __init__(self, site: Site, *args: str):
        self.port = _free_port()
        env = dict(os.environ)
        for k, v in site.env.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        self.err = site.work / f"serve-{self.port}.err"
        with self.err.open("w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "unica", "ocsp", "serve", "--port", str(self.port),
                                          *args], env=env, stdout=subprocess.DEVNULL, stderr=err)
        self.url = f"http://127.0.0.1:{self.port}/"
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("responder exited: " + self.err.read_text())
            try:
                with urllib.request.urlopen(self.url + "healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError("responder did not come up: " + self.err.read_text())

    def ask(self, issuer: Path, chain: Path, cert: Path) -> str:
        r = subprocess.run(["openssl", "ocsp", "-issuer", str(issuer), "-cert", str(cert), "-url", self.url,
                            "-CAfile", str(chain), "-no_nonce"], capture_output=True, text=True, timeout=30)
        return r.stdout + r.stderr

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class BackgroundIssuer:
    """Another process issuing certificates one after another (``unica issue`` in a loop)
    until stopped: a backup is taken while it writes."""

    def __init__(self, site: Site, ca: str):
        self.stop_file = site.work / f"stop-{uuid.uuid4().hex[:6]}"
        self.count_file = site.work / f"issued-{uuid.uuid4().hex[:6]}"
        csr = site.csr("Background")
        script = (
            "import subprocess, sys, pathlib\n"
            f"stop, count = pathlib.Path({str(self.stop_file)!r}), pathlib.Path({str(self.count_file)!r})\n"
            "n = 0\n"
            "while not stop.exists():\n"
            f"    p = subprocess.run([sys.executable, '-m', 'unica', 'issue', '--ca', {ca!r}, '--profile',"
            f" 'enterprise-auth', '--csr', {str(csr)!r}], capture_output=True, text=True)\n"
            "    if p.returncode != 0:\n"
            "        count.write_text('error: ' + p.stderr); sys.exit(1)\n"
            "    n += 1; count.write_text(str(n))\n"
        )
        env = dict(os.environ)
        for k, v in site.env.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        self.proc = subprocess.Popen([sys.executable, "-c", script], env=env)

    def issued(self) -> int:
        try:
            text = self.count_file.read_text()
        except FileNotFoundError:
            return 0
        assert not text.startswith("error"), text
        return int(text or 0)

    def wait_for(self, n: int, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while self.issued() < n:
            assert self.proc.poll() is None or self.issued() >= n, "background issuer stopped"
            assert time.time() < deadline, "background issuer too slow"
            time.sleep(0.1)

    def stop(self) -> int:
        self.stop_file.write_text("")
        self.proc.wait(120)
        assert self.proc.returncode == 0, self.count_file.read_text()
        return self.issued()
