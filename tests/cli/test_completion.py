"""Shell completion (issue #11, item 17): ``unica completion bash|zsh|fish`` and what a TAB
offers, asked of the real ``unica`` entry point the way the shell asks it (``_UNICA_COMPLETE``,
``COMP_WORDS``, ``COMP_CWORD``), against a real UNICA_HOME with two CAs and an operator
profile: command names, the CA names for ``--ca``, the profile names for ``--profile``, the
RFC 5280 reasons for ``--reason``, click's choices and file paths. No database, a broken one or
a bad config.toml gives no candidates and no traceback, and writes nothing. Each script is
sourced in its real shell and asked for candidates there (zsh and fish tests are skipped where
those shells are not installed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import click
import pytest

from tests.conftest import run_unica

PASSPHRASE = "completion-passphrase-5"
TAG = uuid.uuid4().hex[:6]
ROOT, SUB = f"root-{TAG}", f"sub-{TAG}"
OPERATOR_PROFILE = f"acme-sign-{TAG}"
REASONS = ["unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
           "cessationOfOperation", "certificateHold", "privilegeWithdrawn", "aACompromise"]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    h = tmp_path_factory.mktemp("completion") / "home"
    env = {"UNICA_HOME": str(h), "UNICA_PASSPHRASE": PASSPHRASE, "UNICA_DB": None}
    for args in (["init"],
                 ["ca", "create-root", ROOT, "--subject", "C=CN,O=补全测试,CN=Completion Root",
                  "--key-type", "ec-p256", "--crl-url", f"http://crl.example.cn/{ROOT}.crl"],
                 ["ca", "create-sub", SUB, "--parent", ROOT, "--subject", "C=CN,O=补全测试,CN=Completion Sub",
                  "--key-type", "ec-p256", "--crl-url", f"http://crl.example.cn/{SUB}.crl"]):
        p = run_unica(*args, env=env)
        assert p.returncode == 0, p.stderr
    from unica.policies import BUILTIN_DIR

    shutil.copy(BUILTIN_DIR / "enterprise-sign.toml", h / "profiles" / f"{OPERATOR_PROFILE}.toml")
    return h


def complete(*words: str, home: Path | None, env: dict | None = None) -> list[tuple[str, str]]:
    """What bash gets for ``unica WORDS...`` with the cursor on the last word: (type, value) pairs.
    The run must succeed quietly: a TAB never prints to stderr."""
    words = ("unica", *words)
    full = {"_UNICA_COMPLETE": "bash_complete", "COMP_WORDS": " ".join(words), "COMP_CWORD": str(len(words) - 1),
            "UNICA_HOME": str(home) if home else None, "UNICA_DB": None, **(env or {})}
    p = run_unica(env=full, timeout=120)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    return [tuple(line.split(",", 1)) for line in p.stdout.splitlines() if line]  # none: one empty line


def values(*words: str, home: Path | None, env: dict | None = None) -> list[str]:
    out = complete(*words, home=home, env=env)
    assert all(kind == "plain" for kind, _ in out), out
    return [v for _, v in out]


def _cas_and_profiles(home: Path) -> tuple[set[str], set[str]]:
    env = {"UNICA_HOME": str(home), "UNICA_DB": None}
    import json

    cas = json.loads(run_unica("ca", "list", "--json", env=env).stdout)
    profiles = json.loads(run_unica("profile", "list", "--json", env=env).stdout)
    return {c["name"] for c in cas}, {p["name"] for p in profiles}


# --- commands -------------------------------------------------------------------------


def test_every_command_name_is_offered(home):
    from unica.cli.main import MODULE_COMMANDS, cli

    top = values("", home=home)
    assert set(top) >= {n for names in MODULE_COMMANDS.values() for n in names} | {"completion"}
    assert values("ce", home=home) == ["cert"]
    for name in ("ca", "cert", "crl", "ocsp", "token", "audit", "sign", "verify", "key", "profile"):
        group = cli.get_command(None, name)
        assert isinstance(group, click.Group)
        assert values(name, "", home=home) == group.list_commands(None), name


def test_aliases_are_offered_at_the_root_but_walks_see_each_command_once(home, tmp_path):
    """``unica iss<TAB>`` offers ``issue`` (and ``issue-batch``): the aliases are completed beside the
    commands, sorted with them, with their target as help; loading no command module to do so. The
    tree (``list_commands``, ``commands``: what the walks of tests/cli and tests/docs read) still
    holds each command once, under its noun-verb name."""
    from unica.cli.main import ALIASES, cli

    assert values("iss", home=home) == ["issue", "issue-batch"]
    assert values("re", home=home) == ["recover", "release", "restore", "revocation-request", "revoke"]
    assert values("rel", home=home) == ["release"]
    top = values("", home=home)
    assert set(top) >= set(ALIASES) and top == sorted(set(top)), top
    assert set(values("-", home=home)) == {"--version", "-h", "--help"}  # options: no alias among them
    zsh = run_unica(env={"_UNICA_COMPLETE": "zsh_complete", "COMP_WORDS": "unica iss", "COMP_CWORD": "1",
                         "UNICA_HOME": str(home), "UNICA_DB": None}).stdout.splitlines()
    assert zsh == ["plain", "issue", "-> cert issue", "plain", "issue-batch", "-> cert issue-batch"], zsh
    # an alias completes like its command afterwards (the same click command object)
    assert values("issue", "--", home=home) == values("cert", "issue", "--", home=home)
    assert "--profile" in values("issue", "--", home=home)

    assert not set(ALIASES) & set(cli.list_commands(None))
    assert not set(ALIASES) & set(cli.commands)

    probe = ("import atexit, json, sys\n"
             "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
             "from unica.cli.main import main\nmain(sys.argv[1:])\n")
    env = {**os.environ, "_UNICA_COMPLETE": "bash_complete", "COMP_WORDS": "unica iss", "COMP_CWORD": "1"}
    p = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.split() == ["plain,issue", "plain,issue-batch"], p
    import json

    modules = set(json.loads(p.stderr.strip().splitlines()[-1]))
    assert not {f"unica.cli.{m}" for m in ("ca", "revoke", "key", "token", "ocsp", "audit")} & modules

    bash = shutil.which("bash")
    assert bash, "bash is needed"
    script = tmp_path / "unica.bash"
    script.write_text(run_unica("completion", "bash").stdout)
    env = {**_unica_on_path(tmp_path), "UNICA_HOME": str(home)}
    env.pop("UNICA_DB", None)
    program = f"""
source {script}
COMP_WORDS=(unica iss)
COMP_CWORD=1
_unica_completion unica
printf 'reply:%s\\n' "${{COMPREPLY[@]}}"
"""
    p = subprocess.run([bash, "--norc", "--noprofile", "-c", program], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout.splitlines() == ["reply:issue", "reply:issue-batch"]


def test_lazy_loading_holds_when_completing():
    """A TAB after ``--ca`` reads SQLite with the standard library: no SQLAlchemy, no store, no
    cryptography, and only the command module it needs."""
    probe = ("import atexit, json, sys\n"
             "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
             "from unica.cli.main import main\nmain(sys.argv[1:])\n")
    env = {**os.environ, "_UNICA_COMPLETE": "bash_complete", "COMP_WORDS": "unica crl generate --ca ",
           "COMP_CWORD": "4"}
    p = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    import json

    modules = set(json.loads(p.stderr.strip().splitlines()[-1]))
    for heavy in ("sqlalchemy", "unica.store", "unica.ca", "cryptography", "unica.cli.verify", "unica.cli.sign",
                  "unica.cli.token"):
        assert heavy not in modules, heavy


# --- values ---------------------------------------------------------------------------


def test_ca_names_for_every_ca_option_and_argument(home):
    cas, _ = _cas_and_profiles(home)
    assert cas == {ROOT, SUB}
    for words in (("issue", "--ca", ""), ("cert", "list", "--ca", ""), ("revoke", "01", "--ca", ""),
                  ("crl", "generate", "--ca", ""), ("ocsp", "status", "--ca", ""), ("audit", "show", "--ca", ""),
                  ("ca", "create-sub", "x", "--parent", ""), ("cert", "list", "--issued-by", ""),
                  ("ca", "show", ""), ("ca", "export", ""), ("ca", "set", "")):
        assert set(values(*words, home=home)) == cas, words
    assert values("issue", "--ca", "sub-", home=home) == [SUB]
    assert values("issue", "--ca", "nothing-like-it", home=home) == []


def test_ca_names_follow_db(home, tmp_path):
    """``--db`` typed before ``--ca`` is the database read; a URL with no database there offers nothing
    and creates nothing."""
    url = f"sqlite:///{home / 'unica.db'}"
    assert set(values("cert", "list", "--db", url, "--ca", "", home=tmp_path / "elsewhere")) == {ROOT, SUB}
    missing = tmp_path / "missing.db"
    assert values("cert", "list", "--db", f"sqlite:///{missing}", "--ca", "", home=home) == []
    assert not missing.exists()
    assert set(values("cert", "list", "--ca", "", home=tmp_path / "elsewhere",
                      env={"UNICA_DB": url})) == {ROOT, SUB}


def test_profile_names_are_the_profile_lists(home):
    _, profiles = _cas_and_profiles(home)
    assert OPERATOR_PROFILE in profiles and "tls-server" in profiles
    for words in (("issue", "--profile", ""), ("token", "csr", "--profile", ""),
                  ("ca", "create-root", "x", "--profile", ""), ("cert", "list", "--profile", ""),
                  ("profile", "show", "")):
        assert values(*words, home=home) == sorted(profiles), words
    assert values("issue", "--profile", "acme", home=home) == [OPERATOR_PROFILE]


def test_reason_names_are_rfc5280s(home):
    assert values("revoke", "01", "--reason", "", home=home) == REASONS
    assert values("revoke", "--reason", "key", home=home) == ["keyCompromise"]
    assert values("sign", "pdf", "a.pdf", "b.pdf", "--key", "k", "--reason", "", home=home) == []  # free text


def test_every_ca_profile_and_reason_option_completes(home, monkeypatch):
    """Walk the command tree: every option naming a CA (``--ca``, ``--parent``, ``--issued-by``) offers
    the CA names, every ``--profile`` the profile names, every RFC 5280 ``--reason`` the reasons --
    so a command added later cannot forget them."""
    from unica.cli.main import cli

    monkeypatch.setenv("UNICA_HOME", str(home))
    monkeypatch.delenv("UNICA_DB", raising=False)
    cas, profiles = _cas_and_profiles(home)
    seen = {"ca": 0, "profile": 0, "reason": 0}

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(None):
                walk(cmd.get_command(None, name), (*path, name))
            return
        ctx = cmd.make_context(" ".join(path), [], resilient_parsing=True)
        for param in cmd.params:
            if not isinstance(param, click.Option):
                continue
            got = {c.value for c in param.shell_complete(ctx, "")}
            if {"--ca", "--parent", "--issued-by"} & set(param.opts):
                assert got == cas, (path, param.opts)
                seen["ca"] += 1
            elif "--profile" in param.opts:
                assert got == profiles, (path, param.opts)
                seen["profile"] += 1
            elif "--reason" in param.opts and "RFC 5280" in (param.help or ""):
                # a CA is not put on hold (ca revoke): every reason but certificateHold
                expected = set(REASONS) - ({"certificateHold"} if path == ("ca", "revoke") else set())
                assert got == expected, (path, param.opts)
                seen["reason"] += 1

    walk(cli, ())
    assert seen["ca"] >= 10 and seen["profile"] >= 5 and seen["reason"] >= 1, seen


def test_choices_and_paths_are_clicks(home):
    assert values("key", "generate", "file:k.pem", "--type", "ec-p", home=home) == ["ec-p256", "ec-p384"]
    assert values("verify", "cert", "x.pem", "--revocation", "", home=home)
    assert values("completion", "", home=home) == ["bash", "zsh", "fish"]
    assert complete("issue", "--csr", "", home=home) == [("file", "")]
    assert complete("verify", "cert", "", home=home) == [("file", "")]
    assert ("plain", "--reason") in complete("revoke", "--", home=home)


def test_ca_names_from_postgresql(pg_url):
    """Another database than SQLite is read through the store (the same query)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"unica_completion_{TAG}"
    engine = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            c.execute(text(f"CREATE DATABASE {name}"))
    finally:
        engine.dispose()
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    env = {"UNICA_DB": url, "UNICA_PASSPHRASE": PASSPHRASE}
    for args in (["init"], ["ca", "create-root", f"pg-{TAG}", "--subject", "C=CN,O=补全测试,CN=PG Root",
                            "--key-type", "ec-p256"]):
        p = run_unica(*args, env=env)
        assert p.returncode == 0, p.stderr
    assert values("crl", "generate", "--ca", "", home=None, env={"UNICA_DB": url}) == [f"pg-{TAG}"]
    assert values("crl", "generate", "--db", url, "--ca", "pg", home=None) == [f"pg-{TAG}"]


# --- never loud -----------------------------------------------------------------------


def test_no_database_no_candidates_no_traceback(tmp_path):
    nowhere = tmp_path / "no-home"
    assert values("issue", "--ca", "", home=nowhere) == []
    assert not nowhere.exists()
    assert "tls-server" in values("issue", "--profile", "", home=nowhere)


def test_broken_database_or_config_no_candidates_no_traceback(tmp_path):
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "unica.db").write_bytes(b"this is not a database" * 100)
    assert values("issue", "--ca", "", home=garbage) == []
    assert (garbage / "unica.db").read_bytes() == b"this is not a database" * 100

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "unica.db").write_bytes(b"")
    assert values("ocsp", "status", "--ca", "", home=empty) == []
    assert (empty / "unica.db").read_bytes() == b""

    bad_config = tmp_path / "bad-config"
    bad_config.mkdir()
    (bad_config / "config.toml").write_text("db = [not toml\n")
    assert values("issue", "--ca", "", home=bad_config) == []
    assert values("issue", "--profile", "", home=bad_config) == []

    # a database server that does not answer: no candidates, quietly
    assert values("cert", "list", "--db", "postgresql://unica@127.0.0.1:9/none", "--ca", "", home=tmp_path) == []


# --- the scripts ----------------------------------------------------------------------


def test_completion_command_prints_the_scripts():
    """bash and zsh: click's scripts; fish: unica's (click 8.4.0's offers nothing in fish,
    pallets/click#3502). ``_UNICA_COMPLETE=SHELL_source`` prints the same."""
    from click.shell_completion import get_completion_class

    from unica.cli.completion import FishComplete
    from unica.cli.main import cli

    for shell in ("bash", "zsh", "fish"):
        p = run_unica("completion", shell)
        assert p.returncode == 0 and p.stderr == "", p.stderr
        cls = FishComplete if shell == "fish" else get_completion_class(shell)
        assert p.stdout == cls(cli, {}, "unica", "_UNICA_COMPLETE").source()
        assert f"_UNICA_COMPLETE={shell}_complete" in p.stdout
        q = run_unica(env={"_UNICA_COMPLETE": f"{shell}_source"})
        assert q.returncode == 0 and q.stdout.strip() == p.stdout.strip()
    p = run_unica("completion", "tcsh")
    assert p.returncode == 2 and p.stderr.startswith("unica: error:") and len(p.stderr.splitlines()) == 1


def _unica_on_path(tmp_path: Path) -> dict:
    """A PATH whose ``unica`` is this checkout's entry point, as the completion script calls it."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "unica"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m unica "$@"\n')
    exe.chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}


def test_bash_script_registers_and_completes_in_real_bash(home, tmp_path):
    bash = shutil.which("bash")
    assert bash, "bash is needed"
    script = tmp_path / "unica.bash"
    script.write_text(run_unica("completion", "bash").stdout)
    env = {**_unica_on_path(tmp_path), "UNICA_HOME": str(home)}
    env.pop("UNICA_DB", None)
    program = f"""
source {script}
complete -p unica
COMP_WORDS=(unica issue --ca "")
COMP_CWORD=4
_unica_completion unica
printf 'reply:%s\\n' "${{COMPREPLY[@]}}"
COMPREPLY=()
COMP_WORDS=(unica revoke 01 --reason cess)
COMP_CWORD=4
_unica_completion unica
printf 'reply:%s\\n' "${{COMPREPLY[@]}}"
"""
    p = subprocess.run([bash, "--norc", "--noprofile", "-c", program], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "complete -o nosort -F _unica_completion unica"
    assert [x.removeprefix("reply:") for x in lines[1:]] == sorted([ROOT, SUB]) + ["cessationOfOperation"]
    assert p.stderr == ""


def _shell(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        pytest.skip(f"{name} is not installed")
    return exe


def test_zsh_script_parses_and_completes_in_real_zsh(home, tmp_path):
    """Sourced in zsh with the completion system's compdef/compadd/_describe replaced by functions
    that print what they are given: the candidates reach them."""
    zsh = _shell("zsh")
    script = tmp_path / "unica.zsh"
    script.write_text(run_unica("completion", "zsh").stdout)
    assert subprocess.run([zsh, "-n", str(script)], capture_output=True, timeout=60).returncode == 0
    program = f"""
compdef() {{ print -- "compdef $*" }}
_describe() {{ print -l -- "${{(@P)3}}" }}
compadd() {{ print -l -- "${{(@P)5}}" }}
source {script}
words=(unica ca show "")
CURRENT=4
_unica_completion
words=(unica revoke 01 --reason key)
CURRENT=5
_unica_completion
"""
    env = {**_unica_on_path(tmp_path), "UNICA_HOME": str(home)}
    env.pop("UNICA_DB", None)
    p = subprocess.run([zsh, "-f", "-c", program], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout.splitlines() == ["compdef _unica_completion unica", ROOT, SUB, "keyCompromise"]


def test_fish_script_parses_and_completes_in_real_fish(home, tmp_path):
    """fish's own ``complete -C`` asks the sourced script, as a TAB would."""
    fish = _shell("fish")
    script = tmp_path / "unica.fish"
    script.write_text(run_unica("completion", "fish").stdout)
    assert subprocess.run([fish, "--no-execute", str(script)], capture_output=True, timeout=60).returncode == 0
    env = {**_unica_on_path(tmp_path), "UNICA_HOME": str(home)}
    env.pop("UNICA_DB", None)
    csr = tmp_path / "zhangsan.csr"
    csr.write_text("")
    program = (f"source {script}; complete -C 'unica ca show '; complete -C 'unica revoke --reason cess'; "
               f"complete -C 'unica cert rel'; complete -C 'unica issue --csr {tmp_path}/zhang'")
    p = subprocess.run([fish, "--no-config", "-c", program], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout.splitlines() == [ROOT, SUB, "cessationOfOperation", "release\tLift a certificate hold.",
                                     str(csr)]
