"""``--help`` carries examples (issue #11, item 17): the help text of every command that runs
something ends with an ``Examples:`` block (click's ``\\b``, so the lines are shown as written)
of one to three invocations. The examples cannot drift: each is parsed by click's own parser
against the command tree, so it names the command whose help it is (by its noun-verb name, not
an alias), existing options by their current names, every required option and argument, no extra argument, and values
of the right choice or range. The command tree is walked from the click root, so a command added
later without examples fails here.
"""

from __future__ import annotations

import inspect
import shlex
from concurrent.futures import ThreadPoolExecutor

import click
import pytest

from tests.conftest import run_unica
from unica.cli.main import cli

#: where the unica invocation of an example line ends (the rest is the shell's)
SHELL_OPERATORS = {">", ">>", "<", "|", "2>", "2>&1", "&&", "||", ";", "&"}


def _leaf_commands() -> dict[int, tuple[click.Command, list[tuple[str, ...]]]]:
    """Every command that is not a group, once, with the names it is listed under."""
    found: dict[int, tuple[click.Command, list[tuple[str, ...]]]] = {}

    def walk(cmd: click.Command, path: tuple[str, ...]) -> None:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(None):
                walk(cmd.get_command(None, name), (*path, name))
        elif not cmd.hidden:
            found.setdefault(id(cmd), (cmd, []))[1].append(path)

    walk(cli, ())
    return found


LEAVES = sorted(_leaf_commands().values(), key=lambda item: item[1][0])


def _last_paragraph(help_text: str) -> list[str]:
    return inspect.cleandoc(help_text).rstrip().split("\n\n")[-1].splitlines()


def examples_of(help_text: str) -> list[str]:
    """The example command lines at the end of a help text (continuation lines joined)."""
    last = _last_paragraph(help_text)
    assert last[:2] == ["\b", "Examples:"], f"the help does not end with a '\\b' Examples: block: {last[:2]}"
    examples: list[str] = []
    continued = False
    for line in last[2:]:
        assert line.startswith("  ") and line.strip(), f"example lines are indented: {line!r}"
        text = line.strip()
        if continued:
            examples[-1] = examples[-1][:-1].rstrip() + " " + text
        else:
            examples.append(text)
        continued = text.endswith("\\")
    assert not continued, "the last example ends with a line continuation"
    return examples


def parse_example(line: str) -> tuple[click.Command, tuple[str, ...], dict]:
    """The command an example runs, the names that reach it, and the raw values click's parser gives
    its parameters; click raises for an unknown option or a missing option value."""
    words = shlex.split(line, comments=True)
    for i, word in enumerate(words):
        if word in SHELL_OPERATORS:
            words = words[:i]
            break
    assert words and words[0] == "unica", f"an example runs unica: {line}"
    cmd: click.Command = cli
    path: tuple[str, ...] = ()
    i = 1
    while isinstance(cmd, click.Group):
        assert i < len(words), f"{line}: names a group, not a command"
        sub = cmd.get_command(None, words[i])
        assert sub is not None, f"{line}: no command {words[i]!r} in 'unica {' '.join(path)}'"
        cmd, path, i = sub, (*path, words[i]), i + 1
    for word in words[i:]:
        for param in cmd.params:
            assert word.partition("=")[0] not in param.opts[1:], f"{line}: {word}: use {param.opts[0]}, the current name"
    ctx = click.Context(cmd, info_name=" ".join(("unica", *path)))
    opts, extra, _order = cmd.make_parser(ctx).parse_args(list(words[i:]))
    assert not extra, f"{line}: extra arguments {extra}"
    for param in cmd.params:
        value = opts.get(param.name)
        if param.required:
            assert value not in (None, ()), f"{line}: the required {param.get_error_hint(ctx)} is missing"
        if value is not None and not isinstance(param.type, (click.Path, click.File)):  # files need not exist
            param.type_cast_value(ctx, value)  # a wrong choice or a number out of range raises
    return cmd, path, opts


@pytest.mark.parametrize("cmd,paths", LEAVES, ids=[" ".join(paths[0]) for _, paths in LEAVES])
def test_every_command_has_examples_that_parse(cmd, paths):
    examples = examples_of(cmd.help or "")
    assert 1 <= len(examples) <= 3, examples
    for line in examples:
        ran, path, _ = parse_example(line)
        assert ran is cmd, f"{line}: runs 'unica {' '.join(path)}', not 'unica {' '.join(paths[0])}'"
        assert path in paths, f"{line}: use the command's name {' or '.join(' '.join(p) for p in paths)}, not an alias"


def test_the_walk_sees_every_command():
    names = {" ".join(p) for _, paths in LEAVES for p in paths}
    assert {"cert issue", "cert revoke", "ca create-root", "token enroll", "verify pdf", "completion", "init"} <= names
    assert len(LEAVES) >= 50


def test_the_example_parser_refuses_what_would_drift():
    """What parse_example is there to catch: each of these fails."""
    for line in ("unica cert issu --ca issuing",                                     # no such command
                 "unica cert issue --ca issuing --profile p --csr a.csr --bogus",    # no such option
                 "unica cert issue --ca issuing --profile p",                        # --csr is required
                 "unica ca show issuing extra",                                      # an extra argument
                 "unica verify cert a.pem --revocation sometimes",                   # not a choice
                 "unica ocsp serve --workers 0",                                     # out of range
                 "unica cert issue --ca",                                            # an option without value
                 "unica key generate file:k.p8 --type ec-p256"):                     # an option's older name
        with pytest.raises((AssertionError, click.ClickException)):
            parse_example(line)
    cmd, path, opts = parse_example("unica cert export 5F3A --ca issuing --out x.pem > /dev/null  # comment")
    assert path == ("cert", "export") and opts["ca_name"] == "issuing"


def _help(paths: tuple[str, ...]) -> tuple[tuple[str, ...], str, int]:
    p = run_unica(*paths, "--help", env={"COLUMNS": "80"})
    return paths, p.stdout, p.returncode


def test_help_output_shows_the_examples_as_written():
    """On the real binary, at 80 columns: the Examples block is printed line for line (``\\b``: not
    rewrapped), before the options."""
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(_help, [paths[0] for _, paths in LEAVES]))
    by_path = {paths[0]: cmd for cmd, paths in LEAVES}
    for path, out, code in results:
        assert code == 0, path
        block = _last_paragraph(by_path[path].help or "")[1:]
        shown = "\n".join("  " + line for line in block)
        assert shown in out, f"unica {' '.join(path)} --help:\n{out}"
        assert out.index("  Examples:") < out.index("Options:")
