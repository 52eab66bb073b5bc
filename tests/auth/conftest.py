"""A joint CA for the joint-operation tests, built through the CLI as operators would.

One SoftHSM2 token is the CA's HSM; every operator has a token of their own (their card),
holding a P-256 key labelled ``operator`` and the certificate the root issued them under the
built-in ``operator`` profile (``unica token enroll``, before any operator exists).
``alice`` is bootstrapped as the first admin; the others are enrolled, not yet added.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import TEST_PIN, run_unica, softhsm_init_token

CARDS = ("alice", "bob", "carol", "dave", "erin")


@dataclass
class JointCA:
    home: Path
    dir: Path
    hsm: str
    tag: str
    env: dict = field(default_factory=dict)
    certs: dict = field(default_factory=dict)  # operator -> certificate PEM path

    def card(self, who: str) -> str:
        """The key URI of ``who``'s card (PIN from UNICA_PIN)."""
        return f"pkcs11:token={self.tag}-{who};object=operator"

    def run(self, *args, who: str | None = None, env: dict | None = None, **kw):
        e = dict(self.env)
        e.update(env or {})
        if who is not None:
            args = (*args, "--as", self.card(who))
        return run_unica(*args, env=e, **kw)

    def ok(self, *args, **kw):
        p = self.run(*args, **kw)
        assert p.returncode == 0, p.stdout + p.stderr
        return p

    def csr(self, cn: str, *, org: str = "示例科技有限公司") -> Path:
        """An enterprise signing request (software key: the enterprise's card is not the point here)."""
        key = self.dir / f"{cn}.key"
        out = self.dir / f"{cn}.csr"
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", str(key), "-out", str(out), "-utf8", "-subj",
                        f"/C=CN/O={org}/organizationIdentifier=91350100M000100Y43/CN={cn}"],
                       check=True, capture_output=True)
        return out

    def db_url(self) -> str:
        return f"sqlite:///{self.home / 'unica.db'}"

    def sql(self, query: str, **params):
        from sqlalchemy import create_engine, text

        eng = create_engine(self.env.get("UNICA_DB") or self.db_url())
        try:
            with eng.connect() as c:
                return c.execute(text(query), params).all()
        finally:
            eng.dispose()


def pending_id(proc) -> str:
    m = re.search(r"request (r[0-9a-f]{12})", proc.stdout)
    assert m, proc.stdout + proc.stderr
    return m.group(1)


def build_joint_ca(tmp_path: Path, *, db: str | None = None, cards=CARDS) -> JointCA:
    tag = uuid.uuid4().hex[:6]
    home = tmp_path / "home"
    env = {"UNICA_HOME": str(home), "UNICA_PIN": TEST_PIN, "UNICA_OPERATOR": None}
    if db:
        env["UNICA_DB"] = db
    j = JointCA(home=home, dir=tmp_path, hsm=f"{tag}-hsm", tag=tag, env=env)
    softhsm_init_token(j.hsm)
    j.ok("init")
    j.ok("ca", "create-root", "root", "--subject", "C=CN,O=Port Joint CA,CN=Port Root", "--key-type", "ec-p256",
         "--token", j.hsm)
    for who in cards:
        softhsm_init_token(f"{tag}-{who}")
        j.ok("token", "enroll", "--token", f"{tag}-{who}", "--label", "operator", "--key-type", "ec-p256",
             "--subject", f"C=CN,O=Port Joint CA,CN={who.title()}", "--ca", "root", "--profile", "operator")
        serial = j.sql("SELECT serial FROM certificates WHERE profile='operator' ORDER BY id DESC LIMIT 1")[0][0]
        pem = tmp_path / f"{who}.pem"
        j.ok("cert", "export", serial, "--ca", "root", "--out", str(pem))
        j.certs[who] = pem
    return j


@pytest.fixture
def joint(tmp_path) -> JointCA:
    """The joint CA with alice bootstrapped as the first admin, office ``customs`` (root,
    enterprise-sign) with bob as its ra-officer."""
    j = build_joint_ca(tmp_path)
    j.ok("operator", "add", "alice", "--role", "admin", "--cert", str(j.certs["alice"]))
    j.ok("office", "add", "customs", "--ca", "root", "--profile", "enterprise-sign", who="alice")
    j.ok("operator", "add", "bob", "--role", "ra-officer", "--office", "customs", "--cert", str(j.certs["bob"]),
         who="alice")
    return j
