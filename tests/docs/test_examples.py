"""The shell examples of README.md and docs/*.md run, in order, so the docs cannot drift.

The convention (also in docs/design.md, "Documentation"):

- A ```` ```console ```` block is an example. Its ``$ `` lines are commands; a command whose line
  ends in ``\\`` continues on the next line. Other lines are sample output (not compared).
- A command must exit 0, unless its (last) line ends with a comment ``# exit N``.
- A block that must not run is preceded by the line ``<!-- example: not-run REASON -->``. The test
  counts those blocks and requires a reason. A ```` ```sh ```` / ``bash`` / ``shell`` block must
  be marked so (an unmarked one fails: write it as ``console`` or mark it). Command synopses
  are ``text`` blocks.
- Each page runs in one ``bash`` process (blocks in order, so ``export`` and files carry over) in a
  fresh directory with ``scripts/`` linked in (as in a checkout), a fresh ``UNICA_HOME``,
  ``UNICA_DB`` (SQLite in that directory) and ``SOFTHSM2_CONF`` (an empty token store). Secrets come
  from the environment (``UNICA_PIN``, ``UNICA_SO_PIN``, ``UNICA_NEW_PIN``, ``UNICA_PASSPHRASE``),
  set to test values when absent. ``UNICA_SKIP_SETUP=1``: the package install of the quickstart is
  what ``.ci/run`` does before the tests.
- Port ``8080`` in a command is replaced by a free port. A background command (``... &``) must be
  ``unica ocsp serve`` on 127.0.0.1; when the page ends, no process it started may still run
  (the example stops what it starts; on failure the test kills what is left).
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("**/*.md"))]
SHELL_LANGS = {"console", "sh", "bash", "shell", "shell-session"}
NOT_RUN = re.compile(r"^<!--\s*example:\s*not-run\s+(?P<reason>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
EXIT = re.compile(r"#\s*exit\s+(?P<code>\d+)\s*$")

# The one command of the README that is not run here: the test suite itself (CI runs it).
NOT_RUN_COMMANDS = {"python3 -m pytest -q": "the test suite itself: .ci/run runs it; run from a test it would recurse"}


@dataclass
class Command:
    line: int
    text: str
    expect: int


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    commands: list[Command] = field(default_factory=list)
    not_run: str | None = None


def rel(p: Path) -> str:
    return str(p.relative_to(REPO))


def parse_page(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group("fence"), m.group("lang").lower()
        start = i
        body: list[tuple[int, str]] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence[:3]):
            body.append((i + 1, lines[i]))
            i += 1
        i += 1  # closing fence
        if lang not in SHELL_LANGS:
            continue
        prev = lines[start - 1] if start else ""
        nr = NOT_RUN.match(prev.strip())
        block = Block(path, start + 1, lang, not_run=nr.group("reason") if nr else None)
        if lang == "console":
            cur: list[str] | None = None
            first = 0
            for no, text in body:
                s = text.strip()
                if cur is None:
                    if s.startswith("$ "):
                        cur, first = [s[2:]], no
                    else:
                        continue  # sample output
                else:
                    cur.append(text)
                if not cur[-1].rstrip().endswith("\\"):
                    cmd = "\n".join(cur)
                    em = EXIT.search(cur[-1])
                    block.commands.append(Command(first, cmd, int(em.group("code")) if em else 0))
                    cur = None
            assert cur is None, f"{rel(path)}:{block.line}: a command ends in '\\' at the end of the block"
        blocks.append(block)
    return blocks


ALL = {rel(p): parse_page(p) for p in PAGES}


def test_example_inventory():
    """Every shell block is an example that runs, or is marked not-run with a reason; a service is
    started only in the background on 127.0.0.1; the counts are printed (pytest -s / -rA)."""
    run = not_run = 0
    problems = []
    for page, blocks in ALL.items():
        for b in blocks:
            where = f"{page}:{b.line}"
            if b.not_run is not None:
                if not b.not_run:
                    problems.append(f"{where}: not-run without a reason")
                not_run += 1
            elif b.lang != "console":
                problems.append(f"{where}: a ```{b.lang} block that is not marked "
                                "'<!-- example: not-run REASON -->': write it as ```console with '$ ' lines")
            elif not b.commands:
                problems.append(f"{where}: a console block without a '$ ' command")
            else:
                for c in b.commands:
                    if c.text.strip().split("#")[0].strip() in NOT_RUN_COMMANDS:
                        not_run += 1
                    else:
                        run += 1
                        try:
                            _check_service(c, f"{page}:{c.line}")
                        except AssertionError as e:
                            problems.append(str(e))
    assert not problems, "\n".join(problems)
    print(f"\ndocs examples: {run} commands run, {not_run} marked not-run "
          f"({sum(1 for bs in ALL.values() for b in bs if b.not_run is not None)} blocks "
          f"+ {len(NOT_RUN_COMMANDS)} command)")
    assert run > 0


def test_readme_starts_with_the_two_commands():
    """The README's first block: the quickstart (run below with the README) and the test command,
    which is the command .ci/run runs."""
    blocks = ALL["README.md"]
    first = blocks[0]
    text = (REPO / "README.md").read_text(encoding="utf-8").split("\n")
    assert first.line <= 5, "the two commands come first"
    cmds = [c.text.split("#")[0].strip() for c in first.commands]
    assert cmds == ["bash scripts/quickstart.sh", "python3 -m pytest -q"], cmds
    assert "python3 -m pytest -q" in (REPO / ".ci" / "run").read_text()
    assert text[0].startswith("# ")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_service(c: Command, where: str) -> None:
    """``unica ocsp serve`` runs in the background (``&``) on 127.0.0.1, unless the docs expect it
    to fail at once (a non-zero ``# exit N``)."""
    argv = shlex.split(c.text.replace("\\\n", " "), comments=True)
    if "serve" not in argv:
        return
    background = argv[-1] == "&"
    if not background:
        assert c.expect != 0, f"{where}: 'unica ocsp serve' in the foreground would never end: add ' &'"
        return
    assert argv[:3] == ["unica", "ocsp", "serve"], f"{where}: only 'unica ocsp serve' may run in the background"
    if "--host" in argv:
        assert argv[argv.index("--host") + 1] == "127.0.0.1", f"{where}: a service in the docs binds 127.0.0.1"


def page_script(page: str, port: int, blocks: list[Block] | None = None) -> str:
    out = [
        "set -u",
        # stop whatever is left running if the page fails half way
        "trap 'for p in $(jobs -p); do kill $p 2>/dev/null; done; wait 2>/dev/null' EXIT",
        '__check() { if [ "$1" != "$2" ]; then echo "EXAMPLE FAILED at $3: exit $1, the docs say $2" >&2; exit 97; fi; }',
    ]
    for b in ALL[page] if blocks is None else blocks:
        if b.not_run is not None:
            continue
        for c in b.commands:
            where = f"{page}:{c.line}"
            if c.text.split("#")[0].strip() in NOT_RUN_COMMANDS:
                continue
            out.append(f"echo '>>> {where}' >&2")
            out.append(c.text.replace("8080", str(port)))
            out.append(f"__check $? {c.expect} {shlex.quote(where)}")
    # what the page started, it stopped (a stopped server gets 10 s to exit)
    out.append('for __i in $(seq 100); do __alive=""; for p in $(jobs -p); do kill -0 "$p" 2>/dev/null && '
               '__alive="$__alive $p"; done; [ -z "$__alive" ] && break; sleep 0.1; done')
    out.append('if [ -n "$__alive" ]; then echo "EXAMPLE LEFT A PROCESS RUNNING:$__alive" >&2; exit 98; fi')
    return "\n".join(out) + "\n"


RUNNABLE = [p for p, bs in ALL.items() if any(b.not_run is None and b.commands for b in bs)]


@pytest.mark.parametrize("page", RUNNABLE)
def test_page_examples_run(page: str, tmp_path: Path):
    """Every run command of the page exits as the docs say, in a fresh home, database and token store."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "scripts").symlink_to(REPO / "scripts")
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = dict(os.environ)
    env.update({
        "SOFTHSM2_CONF": str(conf),
        "UNICA_HOME": str(tmp_path / "unica-data"),
        "UNICA_DB": f"sqlite:///{tmp_path / 'unica.db'}",
        "UNICA_PKCS11_MODULE": env.get("UNICA_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so"),
        "UNICA_SKIP_SETUP": "1",
        "PYTHONIOENCODING": "utf-8",
    })
    for k, v in {"UNICA_PIN": "4826-user", "UNICA_SO_PIN": "9173-so-officer",
                 "UNICA_NEW_PIN": "5719-new-user", "UNICA_PASSPHRASE": "docs-example-passphrase"}.items():
        env.setdefault(k, v)
    env.pop("UNICA_DEMO_DIR", None)
    script = page_script(page, _free_port())
    (tmp_path / "page.sh").write_text(script)
    p = subprocess.run(["bash", str(tmp_path / "page.sh")], cwd=work, env=env, capture_output=True,
                       text=True, timeout=900, stdin=subprocess.DEVNULL)
    tail = "\n".join((p.stdout + "\n--- stderr\n" + p.stderr).splitlines()[-60:])
    assert p.returncode == 0, f"{page}: examples failed (exit {p.returncode})\n{tail}"


def _run_script(script: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_harness_reports_a_wrong_exit_status_with_its_line(tmp_path: Path):
    """A command that exits otherwise than its block says fails the page, naming page and line."""
    page = tmp_path / "p.md"
    page.write_text("x\n\n```console\n$ true\n$ false   # exit 1\n$ test -e nothing\n```\n")
    blocks = parse_page(page)
    assert [c.expect for c in blocks[0].commands] == [0, 1, 0]
    p = _run_script(page_script("p.md", 1, blocks), tmp_path)
    assert p.returncode == 97 and "EXAMPLE FAILED at p.md:6: exit 1, the docs say 0" in p.stderr, p.stderr


def test_harness_catches_a_process_left_running(tmp_path: Path):
    """A background process the page does not stop fails it (and is killed by the trap)."""
    c = Command(1, "sleep 30 &", 0)
    script = page_script("p.md", 1, [Block(tmp_path / "p.md", 1, "console", [c])])
    p = _run_script(script, tmp_path)
    assert p.returncode == 98 and "LEFT A PROCESS RUNNING" in p.stderr, p.stderr


def test_harness_refuses_a_foreground_server_and_a_public_host():
    for text in ("unica ocsp serve --port 8080", "unica ocsp serve --host 0.0.0.0 --port 8080 &  # note"):
        with pytest.raises(AssertionError):
            _check_service(Command(1, text, 0), "p.md:1")
    _check_service(Command(1, "unica ocsp serve --host 127.0.0.1 --port 8080 &   # note", 0), "p.md:1")
    _check_service(Command(1, "unica ocsp serve --workers 0   # exit 2", 2), "p.md:1")


def test_python_examples_name_what_exists():
    """The Python examples are fragments (placeholders such as ``p7s_bytes``), so they are not run;
    every ``from unica… import …`` in them must name a module and attributes that exist."""
    import ast
    import importlib

    checked, problems = 0, []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").split("\n")
        inside = False
        for no, line in enumerate(lines, 1):
            m = FENCE.match(line)
            if m:
                inside = (not inside) and m.group("lang").lower() == "python"
                continue
            if not inside or not re.match(r"\s*from unica[\w.]* import ", line):
                continue
            node = ast.parse(line.strip()).body[0]
            try:
                mod = importlib.import_module(node.module)
            except ImportError as e:
                problems.append(f"{rel(page)}:{no}: {e}")
                continue
            for alias in node.names:
                checked += 1
                if not hasattr(mod, alias.name):
                    problems.append(f"{rel(page)}:{no}: {node.module} has no {alias.name}")
    assert not problems, "\n".join(problems)
    assert checked > 20, checked


def test_profile_examples_pass_the_strict_loader(tmp_path: Path):
    """Every TOML example in the docs is a profile that ``unica profile check`` accepts, or,
    after the line ``<!-- example: config.toml -->``, a home's config.toml that unica reads."""
    n = configs = 0
    for page in PAGES:
        blocks = re.findall(r"^(<!-- example: config.toml -->\n)?```toml\n(.*?)^```", page.read_text(encoding="utf-8"),
                            re.S | re.M)
        for i, (config, body) in enumerate(blocks):
            if config:
                home = tmp_path / f"{page.stem}-{i}-home"
                home.mkdir()
                (home / "config.toml").write_text(body, encoding="utf-8")
                p = subprocess.run([sys.executable, "-m", "unica", "init"], capture_output=True, text=True,
                                   env=dict(os.environ, UNICA_HOME=str(home)), timeout=120)
                assert p.returncode == 0, f"{rel(page)}: config.toml example {i + 1}: {p.stderr}"
                configs += 1
                continue
            f = tmp_path / f"{page.stem}-{i}.toml"
            f.write_text(body, encoding="utf-8")
            env = dict(os.environ, UNICA_HOME=str(tmp_path / "home"))
            p = subprocess.run([sys.executable, "-m", "unica", "profile", "check", str(f)], env=env,
                               capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, f"{rel(page)}: TOML example {i + 1}: {p.stderr}"
            n += 1
    assert n >= 1 and configs >= 1
