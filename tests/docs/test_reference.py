"""docs/reference.md and the CLI agree: every command is documented there, and every option a
synopsis names exists on that command (so a renamed option or command fails here, not in a
user's hands)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from tests.clitree import leaf_commands
from unica.cli.main import cli

REPO = Path(__file__).resolve().parents[2]
REFERENCE = (REPO / "docs" / "reference.md").read_text(encoding="utf-8")




def _synopses() -> list[str]:
    """Each `unica ...` synopsis: lines of text blocks (with their indented continuation lines)
    and each `unica ...` code span in a table row."""
    out: list[str] = []
    for body in re.findall(r"^```text\n(.*?)^```", REFERENCE, re.S | re.M):
        for line in body.split("\n"):
            code = line.split("#")[0].rstrip()
            if code.startswith("unica "):
                out.append(code)
            elif code.startswith(" ") and code.strip().startswith("[") and out:
                out[-1] += " " + code.strip()
    for row in re.findall(r"^\|.*$", REFERENCE, re.M):
        first_cell = row.split(" | ")[0]
        out += re.findall(r"`(unica [^`]+)`", first_cell)
    return out


def _resolve(words: list[str]) -> tuple[list[str], click.Command | None]:
    cmd: click.Command = cli
    path: list[str] = []
    for w in words:
        if not isinstance(cmd, click.Group):
            break
        sub = cmd.get_command(click.Context(cmd), w)
        if sub is None:
            break
        cmd, path = sub, [*path, w]
    return path, (None if isinstance(cmd, click.Group) else cmd)


def test_every_command_is_in_the_reference():
    missing = []
    for path, _ in leaf_commands(cli):
        name = " ".join(path)
        if f"unica {name}" not in REFERENCE and f"alias `{path[-1]}`" not in REFERENCE:
            missing.append(name)
    assert not missing, f"commands missing from docs/reference.md: {missing}"


def test_every_synopsis_names_a_command_and_its_options():
    problems = []
    synopses = _synopses()
    assert len(synopses) > 40, len(synopses)
    for syn in synopses:
        words = re.findall(r"[a-z][a-z0-9-]*|\S+", syn[len("unica "):])
        path, cmd = _resolve(words)
        if cmd is None:
            problems.append(f"{syn!r}: not a command")
            continue
        known = {o for p in cmd.params for o in (*p.opts, *getattr(p, "secondary_opts", []))}
        for opt in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", syn):
            if opt not in known:
                problems.append(f"{syn!r}: {' '.join(path)} has no {opt}")
    assert not problems, "\n".join(problems)
