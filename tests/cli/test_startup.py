"""CLI start-up (issue #11, item 10): command modules are imported only when one of their
commands runs, a database command does not load Alembic (the schema version is one query), and
the table of lazily loaded commands agrees with the modules. Timing is bench/cli_start.py's job;
these tests check what makes it fast, on the real ``unica`` entry point and a real database."""

from __future__ import annotations

import importlib
import json
import sqlite3
import subprocess
import sys

import pytest

from tests.conftest import run_unica

PASSPHRASE = "start-up-passphrase-3"

#: what no database command may load at start; and what ``unica --help`` may not load either
NEVER = ("alembic", "pyhanko", "pkilint", "unica.verify", "unica.sign", "unica.ocsp")
NOT_FOR_HELP = NEVER + ("sqlalchemy", "unica.store", "unica.ca")

_PROBE = """
import json, sys
from unica.cli.main import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _modules_after(*args: str, env: dict) -> tuple[int, set[str], str]:
    p = subprocess.run([sys.executable, "-c", _PROBE, *args], env=env, capture_output=True, text=True, timeout=300)
    report = json.loads(p.stderr.strip().splitlines()[-1])
    return report["code"], set(report["modules"]), p.stdout


def _loaded(modules: set[str], prefixes) -> list[str]:
    return sorted({p for p in prefixes for m in modules if m == p or m.startswith(p + ".")})


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    import os

    h = tmp_path_factory.mktemp("startup") / "home"
    env = {**os.environ, "UNICA_HOME": str(h), "UNICA_PASSPHRASE": PASSPHRASE}
    env.pop("UNICA_DB", None)
    for args in (["init"], ["ca", "create-root", "root", "--subject", "C=CN,O=Start-up Test,CN=Root",
                            "--key-type", "ec-p256", "--crl-url", "http://crl.example.cn/root.crl"]):
        p = run_unica(*args, env={"UNICA_HOME": str(h), "UNICA_PASSPHRASE": PASSPHRASE, "UNICA_DB": None})
        assert p.returncode == 0, p.stderr
    return h, env


def test_the_lazy_command_table_matches_the_modules():
    from unica.cli.main import COMMAND_MODULES, MODULE_COMMANDS, cli

    assert list(MODULE_COMMANDS) == COMMAND_MODULES
    for module, names in MODULE_COMMANDS.items():
        defined = [c.name for c in importlib.import_module(f"unica.cli.{module}").COMMANDS]
        assert tuple(defined) == names, f"unica.cli.{module}.COMMANDS is {defined}; update MODULE_COMMANDS"
    assert sorted(cli.commands) == sorted(n for names in MODULE_COMMANDS.values() for n in names)


def test_help_lists_every_command_without_loading_the_database(home):
    _h, env = home
    code, modules, out = _modules_after("--help", env=env)
    assert code == 0
    from unica.cli.main import MODULE_COMMANDS

    commands, _, aliases = out.split("Commands:", 1)[1].partition("Aliases:")
    listed = {line.split()[0] for line in commands.splitlines() if line.strip()}
    assert listed == {n for names in MODULE_COMMANDS.values() for n in names}
    from unica.cli.main import ALIASES

    assert {line.split()[0] for line in aliases.splitlines() if line.strip()} == set(ALIASES)
    assert _loaded(modules, NOT_FOR_HELP) == []
    code, modules, out = _modules_after("revoke", "--help", env=env)
    assert code == 0 and "--serials-file" in out and "--spki-sha256" in out
    assert _loaded(modules, NOT_FOR_HELP) == []


def test_database_commands_do_not_load_alembic(home):
    h, env = home
    code, modules, out = _modules_after("ca", "list", env=env)
    assert code == 0 and "root" in out
    assert "sqlalchemy" in modules  # it did open the database
    assert _loaded(modules, NEVER) == []
    serial = sqlite3.connect(h / "unica.db").execute("select serial from certificates").fetchone()[0]
    code, modules, out = _modules_after("cert", "show", serial, env=env)
    assert code == 0 and serial in out
    assert _loaded(modules, NEVER + ("cryptography.x509", "unica.ca.engine")) == []
    code, modules, _ = _modules_after("revoke", "7e57" * 4, env=env)  # unknown: exit 1, after the lookup
    assert code == 1
    assert _loaded(modules, NEVER + ("cryptography.x509", "unica.ca.engine", "unica.ca.crl")) == []


def test_the_reason_names_are_cryptographys():
    """``unica revoke`` names reasons without loading cryptography: the same names, in RFC 5280 order."""
    from cryptography import x509

    from unica.ca.revocation import _REASON_VALUES, parse_reason, reason_value

    assert list(_REASON_VALUES) == [r.value for r in x509.ReasonFlags if r is not x509.ReasonFlags.remove_from_crl]
    for r in x509.ReasonFlags:
        if r is not x509.ReasonFlags.remove_from_crl:
            assert parse_reason(r) is r and parse_reason(r.value) is r and reason_value(r.name) == r.value


def test_schema_head_is_alembics_head_and_another_revision_is_refused(home):
    from unica.store.db import SCHEMA_HEAD, head_revision

    assert SCHEMA_HEAD == head_revision(), "a migration was added: set unica.store.db.SCHEMA_HEAD to it"
    h, env = home
    db = sqlite3.connect(h / "unica.db")
    try:
        with db:
            db.execute("update alembic_version set version_num = '0004'")
        p = run_unica("ca", "list", env={"UNICA_HOME": str(h), "UNICA_DB": None})
        assert p.returncode == 1 and p.stderr.strip().splitlines() == [
            f"unica: error: database sqlite:///{h / 'unica.db'} is at schema 0004; run 'unica init' to migrate"]
        with db:
            db.execute("drop table alembic_version")
        p = run_unica("ca", "list", env={"UNICA_HOME": str(h), "UNICA_DB": None})
        assert p.returncode == 1 and "is not initialised (run 'unica init')" in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
    finally:
        with db:
            db.execute("create table if not exists alembic_version (version_num varchar(32) not null primary key)")
            db.execute("delete from alembic_version")
            db.execute("insert into alembic_version values (?)", (SCHEMA_HEAD,))
        db.close()
    assert run_unica("ca", "list", env={"UNICA_HOME": str(h), "UNICA_DB": None}).returncode == 0
