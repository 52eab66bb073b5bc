"""Fixtures of the OpenID Connect provider tests (issue #14).

``sso_ca`` (function): a fresh copy of a small CA built once per run through the CLI (CA ``root``
on a SoftHSM2 token, cards for alice and bob enrolled, no operator yet, the service's TLS files
from tests/service), with its own home and token directory; plus, in the copy's token directory,
a token ``<tag>-sso`` holding a P-256 ID-token key (``SSOCA.token_key``), and two encrypted key
files beside it: RSA-2048 (``rsa_key``) and P-384 (``ec384_key``), passphrase
:data:`KEY_PASSPHRASE`.

:class:`SSOCA`: the joint CA's ``ok``/``run``/``sql``, ``mint(client_id, issuer, ...)`` (an ID
token made in a process of its own by tests/sso/mint_helper.py), ``serve()`` (the real
``unica serve`` over TLS on 127.0.0.1, stopped at the end of the test).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.auth.conftest import JointCA, build_joint_ca
from tests.service.conftest import _add_tls_files, copy_service_ca, start_service

REPO = Path(__file__).resolve().parents[2]
KEY_PASSPHRASE = "sso-key-passphrase-3371"
USCC = "91350100M000100Y43"


def facts(**over) -> dict:
    """LoginFacts fields of one enterprise login, as JSON (``over`` replaces fields)."""
    out = {"uscc": USCC, "enterprise": "示例科技有限公司", "person": "张三", "cert_serial": "5f3a9c0e1b2d",
           "cert_issuer": "CN=Port Root,O=Port Joint CA,C=CN", "cert_sha256": "ab" * 32, "ca": "root",
           "office": "customs", "roles": ["enterprise"], "method": "card-agent",
           "auth_time": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()}
    out.update(over)
    return out


@dataclass
class SSOCA:
    joint: JointCA
    token_key: str
    rsa_key: str
    ec384_key: str
    services: list = field(default_factory=list)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.joint, name)

    @property
    def env(self) -> dict:
        return {**self.joint.env, "UNICA_PASSPHRASE": KEY_PASSPHRASE}

    def run(self, *args, **kw):
        return self.joint.run(*args, env={"UNICA_PASSPHRASE": KEY_PASSPHRASE, **kw.pop("env", {})}, **kw)

    def ok(self, *args, **kw):
        p = self.run(*args, **kw)
        assert p.returncode == 0, p.stdout + p.stderr
        return p

    def add_client(self, name: str, *uris: str, public: bool = False) -> dict:
        args = ["sso", "client", "add", name, *[a for u in uris for a in ("--redirect-uri", u)], "--json"]
        return json.loads(self.ok(*args, *(["--public"] if public else [])).stdout)

    def add_key(self, uri: str, *args: str) -> dict:
        return json.loads(self.ok("sso", "key", "add", "--key", uri, *args, "--json").stdout)

    def mint(self, client_id: str, issuer: str, *, nonce: str | None = "n-0S6_WzA2Mj", lifetime: int = 300,
             **fact_over) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        env.update({k: v for k, v in self.env.items() if v is not None})
        env.pop("UNICA_OPERATOR", None)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
        req = {"client_id": client_id, "issuer": issuer, "nonce": nonce, "lifetime": lifetime,
               "facts": facts(**fact_over)}
        return subprocess.run([sys.executable, str(Path(__file__).with_name("mint_helper.py"))],
                              input=json.dumps(req), capture_output=True, text=True, env=env, timeout=120)

    def token(self, client_id: str, issuer: str, **kw) -> dict:
        p = self.mint(client_id, issuer, **kw)
        assert p.returncode == 0, p.stdout + p.stderr
        return json.loads(p.stdout)

    def serve(self, *args: str):
        from tests.service.conftest import TLS_PASSPHRASE

        svc = start_service(self.joint, *args, env={"UNICA_PASSPHRASE": TLS_PASSPHRASE})
        self.services.append(svc)
        return svc


@pytest.fixture(scope="session")
def _sso_template(tmp_path_factory) -> SSOCA:
    base = tmp_path_factory.mktemp("sso-ca")
    j = _add_tls_files(build_joint_ca(base, cards=("alice", "bob")))
    j.init_token(f"{j.tag}-sso")
    keys = base / "keys"
    keys.mkdir()
    token_key = f"pkcs11:token={j.tag}-sso;object=idtoken"
    j.ok("key", "generate", token_key, "--key-type", "ec-p256")
    rsa, ec384 = f"file:{keys / 'sso-rsa.pem'}", f"file:{keys / 'sso-p384.pem'}"
    j.ok("key", "generate", rsa, "--key-type", "rsa-2048", env={"UNICA_PASSPHRASE": KEY_PASSPHRASE})
    j.ok("key", "generate", ec384, "--key-type", "ec-p384", env={"UNICA_PASSPHRASE": KEY_PASSPHRASE})
    return SSOCA(j, token_key, rsa, ec384)


@pytest.fixture
def sso_ca(tmp_path, _sso_template) -> SSOCA:
    j = copy_service_ca(_sso_template.joint, tmp_path / "ca")
    ca = SSOCA(j, _sso_template.token_key, _sso_template.rsa_key, _sso_template.ec384_key)
    yield ca
    for svc in ca.services:
        svc.stop()
