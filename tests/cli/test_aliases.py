"""Noun-verb commands and their short aliases (issue #11, item 14), on the real ``unica`` binary.

``unica cert issue|issue-batch|revoke|hold|release`` are the commands; the short forms
``unica issue``, ``issue-batch``, ``revoke`` and ``release`` stay as aliases. An alias *is* its
command (the same click command object), so it takes the same options and exits with the same
codes; ``unica --help`` lists the aliases in their own section, not as commands.
"""

from __future__ import annotations

import json
import re

import click
import pytest

from tests.conftest import run_unica
from tests.revocation.conftest import make_pki
from unica.cli.main import ALIASES, cli

CANONICAL = {"issue": "cert issue", "issue-batch": "cert issue-batch", "revoke": "cert revoke",
             "release": "cert release"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(run_unica, tmp_path_factory.mktemp("aliases"))


def test_the_alias_table_is_the_documented_one():
    assert {alias: " ".join(target) for alias, target in ALIASES.items()} == CANONICAL


def test_an_alias_is_its_command_object():
    ctx = click.Context(cli)
    cert = cli.get_command(ctx, "cert")
    for alias, (group, sub) in ALIASES.items():
        assert cli.get_command(ctx, alias) is cli.get_command(ctx, group).get_command(ctx, sub), alias
    # 'cert hold' exists (no short form: it never had one)
    assert cert.get_command(ctx, "hold") is not None
    # the aliases are not commands of the root group: walks, completion and the docs see each command once
    assert not set(ALIASES) & set(cli.commands)


def test_help_lists_aliases_apart_from_commands():
    p = run_unica("--help")
    assert p.returncode == 0, p.stderr
    commands, sep, aliases = p.stdout.partition("Aliases:")
    assert sep, p.stdout
    listed = {line.split()[0] for line in commands.split("Commands:", 1)[1].splitlines() if line.strip()}
    assert "cert" in listed and not listed & set(ALIASES)
    rows = {tuple(line.split(None, 1)) for line in aliases.splitlines() if line.strip()}
    assert rows == {(alias, f"-> {target}") for alias, target in CANONICAL.items()}
    cert_help = run_unica("cert", "--help").stdout
    for sub in ("issue", "issue-batch", "revoke", "hold", "release", "list", "show", "export"):
        assert re.search(rf"^  {re.escape(sub)}\s", cert_help, re.M), (sub, cert_help)


@pytest.mark.parametrize("alias", sorted(CANONICAL))
def test_alias_help_is_the_command_help(alias):
    a = run_unica(alias, "--help")
    c = run_unica(*CANONICAL[alias].split(), "--help")
    assert a.returncode == c.returncode == 0, (a.stderr, c.stderr)
    assert a.stdout.replace(f"Usage: unica {alias} ", f"Usage: unica {CANONICAL[alias]} ", 1) == c.stdout


@pytest.mark.parametrize("alias", sorted(CANONICAL))
def test_alias_usage_errors_are_the_commands(alias):
    for args in (["--no-such-option-x"], ["--db"]):
        a = run_unica(alias, *args)
        c = run_unica(*CANONICAL[alias].split(), *args)
        assert a.returncode == c.returncode == 2, (a.stderr, c.stderr)
        assert a.stderr.startswith("unica: error: ") and c.stderr.startswith("unica: error: ")
        # the same message, naming the form the operator typed
        assert a.stderr.replace(f"unica {alias} ", f"unica {CANONICAL[alias]} ").replace(
            f"error: {alias}: ", f"error: {CANONICAL[alias]}: ") == c.stderr


def _same(text: str) -> str:
    return re.sub(r"\d{4}-\d\d-\d\d[T ][\d:]+", "TIME", text)


def _cert(pki, *cmd):
    csr = pki.csr()
    r = pki.run(*cmd, "--ca", "sub", "--profile", "enterprise-auth", "--csr", str(csr), "--json")
    return json.loads(r.stdout)["serial"]


def test_issue_revoke_hold_release_both_ways(pki):
    a = _cert(pki, "issue")
    b = _cert(pki, "cert", "issue")
    # a refusal exits alike (3: a profile the CA does not know / may not use)
    refused = [pki.run(*cmd, "--ca", "sub", "--profile", "no-such-profile", "--csr", str(pki.csr()), ok=False)
               for cmd in (["issue"], ["cert", "issue"])]
    assert refused[0].returncode == refused[1].returncode != 0
    assert refused[0].stderr == refused[1].stderr

    for serial, cmd in ((a, ["revoke"]), (b, ["cert", "revoke"])):
        st = json.loads(pki.run(*cmd, serial, "--ca", "sub", "--reason", "keyCompromise", "--json").stdout)
        assert st["status"] == "revoked" and st["reason"] == "keyCompromise"
    # revoking again is refused the same way by both forms
    again = [pki.run(*cmd, s, "--ca", "sub", ok=False) for s, cmd in ((a, ["revoke"]), (b, ["cert", "revoke"]))]
    assert again[0].returncode == again[1].returncode != 0
    assert _same(again[0].stderr.replace(a, "SERIAL")) == _same(again[1].stderr.replace(b, "SERIAL"))

    c = _cert(pki, "cert", "issue")
    d = _cert(pki, "issue")
    held = json.loads(pki.run("cert", "hold", c, "--ca", "sub", "--json").stdout)
    assert held["status"] == "hold"
    held = json.loads(pki.run("revoke", d, "--ca", "sub", "--reason", "certificateHold", "--json").stdout)
    assert held["status"] == "hold"
    assert json.loads(pki.run("release", c, "--ca", "sub", "--json").stdout)["status"] == "valid"
    assert json.loads(pki.run("cert", "release", d, "--ca", "sub", "--json").stdout)["status"] == "valid"
    # releasing what is not on hold: the same refusal both ways
    rel = [pki.run(*cmd, s, "--ca", "sub", ok=False) for s, cmd in ((c, ["release"]), (d, ["cert", "release"]))]
    assert rel[0].returncode == rel[1].returncode != 0


def test_issue_batch_both_ways(pki, tmp_path):
    for n, cmd in enumerate((["issue-batch"], ["cert", "issue-batch"])):
        out = tmp_path / f"out{n}"
        out.mkdir()
        r = pki.run(*cmd, "--ca", "sub", "--profile", "enterprise-auth", "--out-dir", str(out), "--json",
                    str(pki.csr()))
        assert len(json.loads(r.stdout)) == 1 and len(list(out.glob("*.pem"))) == 1
