"""A joint CA for the joint-operation tests, built through the CLI as operators would.

One SoftHSM2 token is the CA's HSM; every operator has a token of their own (their card),
holding a P-256 key labelled ``operator`` and the certificate the root issued them under the
built-in ``operator`` profile (``unica token enroll``, before any operator exists).

Building it takes some thirty CLI runs, so it is built once per test run and each test gets a
copy: its own home (SQLite database) and its own SoftHSM2 token directory (its own
``SOFTHSM2_CONF``), so no test sees another's tokens or rows. On PostgreSQL (``joint_any``) the
CA is built afresh in a new database. Make extra tokens with :meth:`JointCA.init_token`, which
creates them in the copy's token directory (not the run's global one).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from tests.conftest import TEST_PIN, TEST_SO_PIN, run_unica

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

    def init_token(self, label: str, pin: str = TEST_PIN, so_pin: str = TEST_SO_PIN) -> None:
        """A new token in this CA's own SoftHSM2 token directory."""
        import os

        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin],
                       check=True, capture_output=True, env={**os.environ, "SOFTHSM2_CONF": self.env["SOFTHSM2_CONF"]})

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
        return self.env.get("UNICA_DB") or f"sqlite:///{self.home / 'unica.db'}"

    def sql(self, query: str, **params):
        from sqlalchemy import create_engine, text

        eng = create_engine(self.db_url())
        try:
            with eng.begin() as c:
                result = c.execute(text(query), params)
                return result.all() if result.returns_rows else result.rowcount
        finally:
            eng.dispose()


def pending_id(proc) -> str:
    m = re.search(r"request (r[0-9a-f]{12})", proc.stdout)
    assert m, proc.stdout + proc.stderr
    return m.group(1)


def _token_dir(base: Path) -> tuple[Path, Path]:
    tokens = base / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    return tokens, conf


def build_joint_ca(base: Path, *, db: str | None = None, cards=CARDS, own_tokens: bool = True) -> JointCA:
    """A home with CA ``root`` on its HSM token and an enrolled card per name in ``cards``
    (no operator added yet), with its own SoftHSM2 token directory under ``base`` (else, with
    ``own_tokens`` False, in the test run's: for tests that use the cards in-process, where
    the PKCS#11 module is initialised once with the run's configuration)."""
    import os

    tag = uuid.uuid4().hex[:6]
    home = base / "home"
    conf = _token_dir(base)[1] if own_tokens else os.environ["SOFTHSM2_CONF"]
    env = {"UNICA_HOME": str(home), "UNICA_PIN": TEST_PIN, "UNICA_OPERATOR": None, "SOFTHSM2_CONF": str(conf)}
    if db:
        env["UNICA_DB"] = db
    j = JointCA(home=home, dir=base, hsm=f"{tag}-hsm", tag=tag, env=env)
    j.init_token(j.hsm)
    j.ok("init")
    j.ok("ca", "create-root", "root", "--subject", "C=CN,O=Port Joint CA,CN=Port Root", "--key-type", "ec-p256",
         "--token", j.hsm)
    for who in cards:
        j.init_token(f"{tag}-{who}")
        j.ok("token", "enroll", "--token", f"{tag}-{who}", "--label", "operator", "--key-type", "ec-p256",
             "--subject", f"C=CN,O=Port Joint CA,CN={who.title()}", "--ca", "root", "--profile", "operator")
        serial = j.sql("SELECT serial FROM certificates WHERE profile='operator' ORDER BY id DESC LIMIT 1")[0][0]
        pem = base / f"{who}.pem"
        j.ok("cert", "export", serial, "--ca", "root", "--out", str(pem))
        j.certs[who] = pem
    return j


def fresh_pg_database(base_url: str) -> str:
    """A new empty database in the throwaway PostgreSQL cluster (one per test)."""
    from sqlalchemy import create_engine, text

    name = "unica_" + uuid.uuid4().hex[:10]
    eng = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))
    eng.dispose()
    return base_url.rsplit("/", 1)[0] + "/" + name


def bootstrap(j: JointCA) -> JointCA:
    """alice bootstraps as the first admin; office ``customs`` (root, enterprise-sign); bob its officer."""
    j.ok("operator", "add", "alice", "--role", "admin", "--cert", str(j.certs["alice"]))
    j.ok("office", "add", "customs", "--ca", "root", "--profile", "enterprise-sign", who="alice")
    j.ok("operator", "add", "bob", "--role", "ra-officer", "--office", "customs", "--cert", str(j.certs["bob"]),
         who="alice")
    return j


def copy_joint_ca(template: JointCA, base: Path) -> JointCA:
    """A copy of ``template`` under ``base``: its home, its token directory, its certificates."""
    shutil.copytree(template.home, base / "home")
    shutil.copytree(template.dir / "tokens", base / "tokens")
    _, conf = _token_dir(base)
    certs = {}
    for who, pem in template.certs.items():
        certs[who] = base / pem.name
        shutil.copy(pem, certs[who])
    return replace(template, home=base / "home", dir=base, certs=certs,
                   env={**template.env, "UNICA_HOME": str(base / "home"), "SOFTHSM2_CONF": str(conf)})


@pytest.fixture(scope="session")
def _enrolled_template(tmp_path_factory) -> JointCA:
    return build_joint_ca(tmp_path_factory.mktemp("joint-enrolled"))


@pytest.fixture(scope="session")
def _joint_template(tmp_path_factory, _enrolled_template) -> JointCA:
    return bootstrap(copy_joint_ca(_enrolled_template, tmp_path_factory.mktemp("joint-bootstrapped")))


@pytest.fixture
def enrolled(tmp_path, _enrolled_template) -> JointCA:
    """The joint CA before any operator: every card enrolled, nobody added."""
    return copy_joint_ca(_enrolled_template, tmp_path)


@pytest.fixture
def joint(tmp_path, _joint_template) -> JointCA:
    """The joint CA with alice bootstrapped as the first admin, office ``customs`` (root,
    enterprise-sign) with bob as its ra-officer; carol, dave and erin have enrolled cards but are
    not operators."""
    return copy_joint_ca(_joint_template, tmp_path)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def joint_any(request, tmp_path, _joint_template) -> JointCA:
    """:func:`joint` on SQLite and on PostgreSQL (built afresh in a new database: slow, so the
    PostgreSQL variants run with ``-m slow``; CI runs the quorum race on PostgreSQL, below)."""
    if request.param == "sqlite":
        return copy_joint_ca(_joint_template, tmp_path)
    return bootstrap(build_joint_ca(tmp_path, db=fresh_pg_database(request.getfixturevalue("pg_url"))))
