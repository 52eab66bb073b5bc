"""A CA hierarchy built once per test run through the CLI, as an operator would:

root (P-384 key on the SoftHSM2 token ``unica-test``) -> ``sub-soft`` (P-256 key in an
encrypted file) and ``sub-tok`` (RSA-3072 key on the token), each with CRL / OCSP / caIssuers
URLs. Tests that refuse requests count certificate rows before and after.
"""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_unica

PASSPHRASE = "ca-test-passphrase-7"


@dataclass
class PKI:
    home: Path
    dir: Path
    env: dict
    root: str
    subs: dict  # name -> PEM path
    root_pem: Path

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

    def cert_rows(self) -> int:
        return count_rows(self.db_url(), "certificates")


def count_rows(url: str, table: str, where: str = "") -> int:
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    try:
        with eng.connect() as c:
            return c.execute(text(f"SELECT count(*) FROM {table} {where}")).scalar()
    finally:
        eng.dispose()


def openssl_csr(out_dir: Path, subj: str, *, key: str = "ec:P-256", san: str | None = None,
                name: str | None = None) -> Path:
    """A CSR made by ``openssl req`` (new key each time). ``key``: 'ec:P-256', 'rsa:2048'..."""
    name = name or uuid.uuid4().hex[:8]
    keyfile, csr = out_dir / f"{name}.key", out_dir / f"{name}.csr"
    kind, param = key.split(":")
    if kind == "ec":
        newkey = ["-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{param}"]
    else:
        newkey = ["-newkey", f"rsa:{param}"]
    cmd = ["openssl", "req", "-new", *newkey, "-nodes", "-keyout", str(keyfile), "-out", str(csr),
           "-utf8", "-subj", subj]
    if san:
        cmd += ["-addext", f"subjectAltName={san}"]
    subprocess.run(cmd, check=True, capture_output=True)
    return csr


@pytest.fixture(scope="session")
def pki(tmp_path_factory, token_label) -> PKI:
    d = tmp_path_factory.mktemp("ca-pki")
    home = d / "home"
    env = {"UNICA_HOME": str(home), "UNICA_PASSPHRASE": PASSPHRASE, "UNICA_DB": None}
    p = PKI(home=home, dir=d, env=env, root="root", subs={}, root_pem=d / "root.pem")
    tag = uuid.uuid4().hex[:6]
    p.root = f"root-{tag}"
    p.ok("init")
    p.ok("ca", "create-root", p.root, "--subject", "C=CN,O=统一测试根,CN=unica Test Root",
         "--key-type", "ec-p384", "--token", token_label)
    p.ok("ca", "export", p.root, "--out", str(p.root_pem))
    for name, keyargs in ((f"sub-soft-{tag}", ["--key-type", "ec-p256"]),
                          (f"sub-tok-{tag}", ["--key-type", "rsa-3072", "--token", token_label])):
        p.ok("ca", "create-sub", name, "--parent", p.root, "--subject", f"C=CN,O=统一测试,CN=unica {name}",
             *keyargs, "--crl-url", f"http://crl.example.cn/{name}.crl", "--ocsp-url", "http://ocsp.example.cn/",
             "--ca-issuers-url", f"http://ca.example.cn/{name}.cer")
        pem = d / f"{name}.pem"
        p.ok("ca", "export", name, "--out", str(pem))
        p.subs[name] = pem
    return p


def lint_cert(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["lint_pkix_cert", "lint", "-s", "WARNING", str(path)], capture_output=True, text=True)


def lint_chain(issuer: Path, subject: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["lint_pkix_signer_signee_cert_chain", "lint", "-s", "WARNING", str(issuer), str(subject)],
                          capture_output=True, text=True)


def openssl_verify(root: Path, sub: Path | None, leaf: Path) -> subprocess.CompletedProcess:
    cmd = ["openssl", "verify", "-CAfile", str(root)]
    if sub:
        cmd += ["-untrusted", str(sub)]
    return subprocess.run([*cmd, str(leaf)], capture_output=True, text=True)
