"""Shell completion: ``unica completion bash|zsh|fish`` and the value completers.

The shell calls ``unica`` again with ``_UNICA_COMPLETE`` set at each TAB; click's shell
completion machinery answers (commands, options, choices, file paths; for fish with unica's own
script, see :class:`FishComplete`) and the completers here answer for the values click cannot
know:

* ``--ca`` (and a CA NAME argument): the CA names in the database;
* ``--profile`` (and a profile NAME argument): the built-in and operator profile names;
* ``--reason``: the RFC 5280 revocation reasons.

A completer runs on every TAB, so it is cheap (the SQLite database is read with the standard
library, read-only, one query; profiles are file names) and never fails loudly: no database, a
locked or broken one, a bad ``config.toml`` -- no candidates, no traceback, and no database or
directory is created (SQLite may add the ``-wal``/``-shm`` files of an existing database, with its
permissions, as any reader does). This module imports only click and the standard library when it
is loaded: the command modules import it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable, Iterable

import click
import click.shell_completion

#: the shells click generates a completion script for
SHELLS = ("bash", "zsh", "fish")

#: the environment variable the shell sets when it asks ``unica`` for completions
COMPLETE_VAR = "_UNICA_COMPLETE"

#: seconds a completer waits for a locked SQLite database before giving up (no candidates)
_DB_TIMEOUT = 0.5


def _quiet(complete: Callable[[click.Context, click.Parameter, str], Iterable[str]]):
    """A completer that offers the candidates starting with what is typed, and none at all,
    silently, when anything goes wrong."""

    @functools.wraps(complete)
    def wrapper(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        try:
            return [v for v in complete(ctx, param, incomplete) if v.startswith(incomplete)]
        except Exception:  # a TAB never prints a traceback
            if os.environ.get("UNICA_DEBUG"):
                raise
            return []

    return wrapper


def _db_option(ctx: click.Context) -> str | None:
    """The ``--db URL`` already typed on this command line, if any."""
    while ctx is not None:
        if ctx.params.get("db"):
            return ctx.params["db"]
        ctx = ctx.parent
    return None


def _sqlite_path(url: str | None) -> Path | None:
    """The file of a SQLite database URL (None: the default ``$UNICA_HOME/unica.db``); None for
    another database or an in-memory one."""
    if url is None:
        from unica.config import home

        return home() / "unica.db"
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] != "sqlite" or not rest.startswith("/"):
        return None
    path = rest[1:].partition("?")[0]
    return Path(path) if path and path != ":memory:" else None


def _query(url: str | None, sql: str) -> list[str]:
    """The first column of ``sql`` on the database, read-only; a SQLite file is read with the
    standard library (no SQLAlchemy to import at each TAB), another database through the store."""
    path = _sqlite_path(url)
    if path is not None:
        import sqlite3
        from urllib.parse import quote

        if not path.is_file():  # never create it
            return []
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=_DB_TIMEOUT)
        try:
            return [row[0] for row in conn.execute(sql) if isinstance(row[0], str)]
        finally:
            conn.close()
    if url is None or url.partition("://")[0].split("+")[0] == "sqlite":
        return []  # in memory: nothing to offer
    from sqlalchemy import text

    from unica.store import open_store

    store = open_store(url)
    try:
        with store.read() as s:
            return [row[0] for row in s.execute(text(sql))]
    finally:
        store.engine.dispose()


@_quiet
def complete_ca(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """The CA names in the database (``--db``, else UNICA_DB, else config.toml, else UNICA_HOME)."""
    from unica.config import db_url

    return _query(db_url(_db_option(ctx)), "SELECT name FROM cas ORDER BY name")


@_quiet
def complete_profile(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """The built-in profile names and the operator's (``profiles/NAME.toml`` under UNICA_HOME, or
    config.toml's ``profiles_dir``), by file name: nothing is parsed."""
    from unica.config import profiles_dir

    builtin = Path(__file__).resolve().parent.parent / "policies" / "builtin"
    names = {p.stem for p in builtin.glob("*.toml")}
    operator = profiles_dir()
    if operator.is_dir():
        names.update(p.stem for p in operator.glob("*.toml") if not p.name.startswith("."))
    return sorted(names)


def complete_choices(values: Iterable[str]):
    """A completer offering ``values`` (e.g. the RFC 5280 reason names), in their order."""
    values = tuple(values)

    @_quiet
    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> tuple[str, ...]:
        return values

    return complete


#: fish: one candidate a line, ``TYPE,VALUE`` or ``TYPE,VALUE<TAB>HELP`` (fish shows the help beside it)
_SOURCE_FISH = """\
function %(complete_func)s;
    set -l response (env %(complete_var)s=fish_complete COMP_WORDS=(commandline -cp) \
COMP_CWORD=(commandline -t) %(prog_name)s);

    for completion in $response;
        set -l metadata (string split --max 1 "," -- $completion);

        if test "$metadata[1]" = "dir";
            __fish_complete_directories $metadata[2];
        else if test "$metadata[1]" = "file";
            __fish_complete_path $metadata[2];
        else if test "$metadata[1]" = "plain";
            echo $metadata[2];
        end;
    end;
end;

complete --no-files --command %(prog_name)s --arguments "(%(complete_func)s)";
"""


class FishComplete(click.shell_completion.FishComplete):
    """click's fish completion with a script and a format of unica's own: click 8.4.0's script splits
    its own ``string split \\n`` line in two and fish flattens its three-line answers, so no
    candidate is ever offered (pallets/click#3502). Registered for ``fish`` by importing this module,
    which :func:`unica.cli.main.main` does whenever the shell asks for completions."""

    source_template = _SOURCE_FISH

    def format_completion(self, item: click.shell_completion.CompletionItem) -> str:
        help_text = " ".join((item.help or "").split())  # one line, whatever the help holds
        value = " ".join(str(item.value).splitlines())
        return f"{item.type},{value}" + (f"\t{help_text}" if help_text else "")


click.shell_completion.add_completion_class(FishComplete, "fish")


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS), metavar="SHELL")
def completion_cmd(shell: str) -> None:
    """Print the shell completion script for SHELL: commands, options, choices, file names, and the
    values of --ca (CA names), --profile (profile names) and --reason (RFC 5280 reasons).

    bash (4.4 or later) loads the file below when unica is first completed, or put
    eval "$(unica completion bash)" in ~/.bashrc; zsh: source the file from ~/.zshrc (after
    compinit); fish loads the file below by itself. Open a new shell afterwards.

    \b
    Examples:
      unica completion bash > ~/.local/share/bash-completion/completions/unica
      unica completion zsh > ~/.zsh/unica-completion.zsh  # then in ~/.zshrc: source it
      unica completion fish > ~/.config/fish/completions/unica.fish
    """
    from click.shell_completion import get_completion_class

    root = click.get_current_context().find_root()
    complete_class = get_completion_class(shell)
    click.echo(complete_class(root.command, {}, root.info_name or "unica", COMPLETE_VAR).source(), nl=False)


COMMANDS = [completion_cmd]
