"""A small CA hierarchy made through the CLI, and helpers to issue from `openssl req` CSRs."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

ORG_ID = "91350100M000100Y43"  # a Unified Social Credit Code with a correct check character


class PKI:
    def __init__(self, unica, home: Path, tmp: Path):
        self.unica = unica
        self.home = home
        self.tmp = tmp
        self.env = {"UNICA_HOME": str(home), "UNICA_PASSPHRASE": "test key passphrase", "UNICA_DB": None}

    def run(self, *args, ok: bool = True):
        r = self.unica(*args, env=self.env)
        if ok:
            assert r.returncode == 0, f"unica {' '.join(args)}: {r.stderr}"
        return r

    def csr(self, cn: str = "Declarant") -> Path:
        path = self.tmp / f"{uuid.uuid4().hex[:8]}.csr"
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", str(path.with_suffix(".key")), "-utf8", "-out", str(path),
                        "-subj", f"/C=CN/O=示例贸易有限公司/organizationIdentifier={ORG_ID}/CN={cn}"],
                       check=True, capture_output=True)
        return path

    def issue(self, ca: str, profile: str = "enterprise-auth", cn: str = "Declarant") -> dict:
        r = self.run("issue", "--ca", ca, "--profile", profile, "--csr", str(self.csr(cn)), "--json")
        return json.loads(r.stdout)

    def export(self, ca: str) -> Path:
        path = self.tmp / f"{ca}.pem"
        path.write_text(self.run("ca", "export", ca).stdout)
        return path

    def ca_info(self, ca: str) -> dict:
        return json.loads(self.run("ca", "show", ca, "--json").stdout)


def make_pki(unica, tmp_path) -> PKI:
    home = tmp_path / "home"
    p = PKI(unica, home, tmp_path)
    p.run("init")
    p.run("ca", "create-root", "root", "--subject", "C=CN,O=Port Authority,CN=Test Root CA",
          "--key-type", "ec-p256", "--crl-url", "http://crl.port.example/root.crl")
    p.run("ca", "create-sub", "sub", "--parent", "root", "--subject", "C=CN,O=Port Authority,CN=Test Issuing CA",
          "--key-type", "ec-p256", "--crl-url", "http://crl.port.example/sub.crl",
          "--ocsp-url", "http://ocsp.port.example/")
    return p


@pytest.fixture
def pki(unica, tmp_path):
    return make_pki(unica, tmp_path)


@pytest.fixture(scope="module")
def module_pki(tmp_path_factory):
    """One hierarchy shared by a module's tests (each test uses certificates of its own)."""
    from tests.conftest import run_unica

    return make_pki(run_unica, tmp_path_factory.mktemp("pki"))
