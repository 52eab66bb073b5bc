"""TSA fixtures, built through the CLI as an operator would: a home with a root CA on the run's
SoftHSM2 token, a TSA unit whose key is on that token (default policy POLICY, also accepting
ALT_POLICY), and ``unica tsa serve`` started for real on a free port of 127.0.0.1, its clock
check a status file the tests write (the real clock is never touched)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import run_unica

POLICY = "1.3.6.1.4.1.59999.3161.1"
ALT_POLICY = "1.3.6.1.4.1.59999.3161.2"
OTHER_POLICY = "1.3.6.1.4.1.59999.3161.9"
PASSPHRASE = "tsa-test-passphrase-3"


@dataclass
class TSAHome:
    home: Path
    dir: Path
    env: dict
    root_pem: Path
    unit: str
    unit_pem: Path
    token: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    def run(self, *args, **kw):
        env = dict(self.env)
        env.update(kw.pop("env", {}) or {})
        return run_unica(*args, env=env, **kw)

    def ok(self, *args, **kw):
        p = self.run(*args, **kw)
        assert p.returncode == 0, p.stdout + p.stderr
        return p

    def db_url(self) -> str:
        return f"sqlite:///{self.home / 'unica.db'}"

    def sql(self, query: str, **params):
        from sqlalchemy import create_engine, text

        eng = create_engine(self.db_url())
        try:
            with eng.connect() as c:
                return c.execute(text(query), params).fetchall()
        finally:
            eng.dispose()

    def counts(self) -> dict:
        return {t: self.sql(f"SELECT count(*) FROM {t}")[0][0]
                for t in ("tsa_units", "certificates", "audit_log", "tsa_tokens")}

    def add_unit(self, name: str, *args: str) -> Path:
        """A new unit on the token (extra options in ``args``); returns its certificate's PEM path."""
        self.ok("tsa", "unit", "add", name, "--ca", "root", "--token", self.token, "--policy", POLICY, *args)
        pem = self.dir / f"{name}.pem"
        self.ok("tsa", "unit", "show", name, "--cert-out", str(pem))
        return pem


class Server:
    """``unica tsa serve`` in a subprocess on a free port; ``url`` once it printed its line."""

    def __init__(self, h: TSAHome, *args: str, env: dict | None = None):
        e = dict(os.environ)
        e.update({k: v for k, v in h.env.items() if v is not None})
        for k, v in h.env.items():
            if v is None:
                e.pop(k, None)
        e.update(env or {})
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "unica", "tsa", "serve", "--port", "0", *args], env=e,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self._seen = threading.Event()
        self.url = None
        threading.Thread(target=self._read, daemon=True).start()
        self._seen.wait(30)
        if self.url is None:
            self.close()
            raise AssertionError("unica tsa serve did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            mt = re.match(r"unica tsa on (https?://127\.0\.0\.1:\d+/)", line)
            if mt:
                self.url = mt.group(1)
                self._seen.set()
        self._seen.set()

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].strip("/"))

    def close(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.fixture(scope="session")
def tsa_home(tmp_path_factory, token_label) -> TSAHome:
    d = tmp_path_factory.mktemp("tsa")
    home = d / "home"
    env = {"UNICA_HOME": str(home), "UNICA_PASSPHRASE": PASSPHRASE, "UNICA_DB": None}
    h = TSAHome(home=home, dir=d, env=env, root_pem=d / "root.pem", unit="tsa1", unit_pem=d / "tsa1.pem",
                token=token_label)
    h.ok("init")
    h.ok("ca", "create-root", "root", "--subject", "C=CN,O=统一测试时间戳,CN=unica TSA Test Root",
         "--key-type", "ec-p256", "--token", token_label)
    h.ok("ca", "export", "root", "--out", str(h.root_pem))
    h.unit_pem = h.add_unit(h.unit, "--accept-policy", ALT_POLICY)
    return h


@pytest.fixture(scope="session")
def clock_file(tsa_home) -> Path:
    p = tsa_home.dir / "clock-status"
    p.write_text("synced offset=0.0004\n")
    return p


@pytest.fixture(scope="session")
def server(tsa_home, clock_file):
    """The running TSA for unit tsa1 (clock check: ``clock_file``, every 0.1 s)."""
    with Server(tsa_home, "--unit", tsa_home.unit, "--clock-status", str(clock_file), "--clock-interval", "0.1") as s:
        yield s


def post(url: str, body: bytes, content_type: str | None = "application/timestamp-query",
         headers: dict | None = None) -> tuple[int, str, bytes]:
    """POST with http.client: (status, content type, body)."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        h = dict(headers or {})
        if content_type is not None:
            h["Content-Type"] = content_type
        conn.request("POST", u.path or "/", body=body, headers=h)
        r = conn.getresponse()
        return r.status, r.getheader("content-type") or "", r.read()
    finally:
        conn.close()


def wait_for(predicate, timeout: float = 10.0, step: float = 0.05):
    end = time.monotonic() + timeout
    while True:
        v = predicate()
        if v or time.monotonic() > end:
            return v
        time.sleep(step)
