"""Entry point of the ``unica`` command.

Each area of the CLI lives in its own module under ``unica.cli`` and exposes
``COMMANDS``: a list of click commands or groups added to the root group.

:func:`main` is the one place that maps failures to exit statuses, each reported as one
line ``unica: error: ...`` on stderr (no traceback, no click "Usage:" block):

* 2: a usage error (unknown command or option, missing argument, a value of the wrong type
  or out of its range -- option types carry their ranges) and malformed input
  (:class:`~unica.errors.InputError`, :class:`~unica.errors.ConfigurationError`, ...);
* 3: refused by policy (:class:`~unica.errors.PolicyViolation`);
* 1: the environment or an operation failed (:class:`~unica.errors.EnvironmentFailure`,
  raised where the system refused: a read-only home, an address in use, a host that does
  not resolve; :class:`~unica.errors.StoreError`, token errors, ...);
* 70: a bug -- any other exception (set ``UNICA_DEBUG=1`` for its traceback).

Library warnings never reach the operator's screen, and human output never fails on the
terminal's encoding (characters it cannot show are written as ``\\uXXXX`` escapes).
"""

from __future__ import annotations

import atexit
import gc
import importlib
import io
import os
import sys
import warnings

import click

from unica import __version__
from unica.errors import ApprovalPending, UnicaError

#: modules under unica.cli that contribute commands, in help order
COMMAND_MODULES = [
    "key",
    "token",
    "ca",
    "revoke",
    "ocsp",
    "audit",
    "operator",
    "ra",
    "sign",
    "timestamp",
    "verify",
    "show",
    "backup",
    "serve",
    "tsa",
    "agent",
    "sso",
    "completion",
]

#: the commands each of those modules puts in its ``COMMANDS``: the root group imports a module
#: only when one of its commands is run (or listed by ``unica --help``), not at every start
#: (tests/cli/test_startup.py checks that this table and the modules agree)
MODULE_COMMANDS = {
    "key": ("key",),
    "token": ("token",),
    "ca": ("init", "ca", "cert", "profile"),
    "revoke": ("crl", "recover"),
    "ocsp": ("ocsp",),
    "audit": ("audit",),
    "operator": ("operator", "office", "approval-rule", "approval"),
    "ra": ("enterprise", "application", "revocation-request"),
    "sign": ("sign",),
    "timestamp": ("timestamp",),
    "verify": ("verify",),
    "show": ("show",),
    "backup": ("backup", "restore"),
    "serve": ("serve",),
    "tsa": ("tsa",),
    "agent": ("agent",),
    "sso": ("sso",),
    "completion": ("completion",),
}

#: the short forms, kept as aliases of the noun-verb commands: an alias *is* that command (the same
#: click command object: the same options, the same exit codes); ``unica --help`` lists them apart
ALIASES = {
    "issue": ("cert", "issue"),
    "issue-batch": ("cert", "issue-batch"),
    "revoke": ("cert", "revoke"),
    "release": ("cert", "release"),
}

#: exit status for a usage error (click's, like InputError's)
EXIT_USAGE = 2

#: exit status for a bug (an exception that is not a UnicaError)
EXIT_INTERNAL = 70


class _LazyGroup(click.Group):
    """The root group: a command module is imported on first use of one of its commands, so
    ``unica revoke`` does not pay for importing what ``unica verify`` or ``unica sign`` need.
    ``commands`` (all of them) still works: reading it imports every module."""

    def __init__(self, *args, modules: dict[str, tuple[str, ...]], **kwargs):
        self._module_of = {name: module for module, names in modules.items() for name in names}
        self._loaded: dict[str, click.Command] = {}
        super().__init__(*args, **kwargs)

    @property
    def commands(self) -> dict[str, click.Command]:
        for name in self._module_of:
            self._load(name)
        return self._loaded

    @commands.setter
    def commands(self, value) -> None:  # click.Group.__init__ sets it
        self._loaded = dict(value or {})

    def _load(self, name: str) -> click.Command | None:
        if name not in self._loaded and name in self._module_of:
            module = importlib.import_module(f"unica.cli.{self._module_of[name]}")
            for command in module.COMMANDS:
                self._loaded.setdefault(command.name, command)
        return self._loaded.get(name)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        self._loaded[name or cmd.name] = cmd

    def get_command(self, ctx, cmd_name: str) -> click.Command | None:
        if cmd_name in ALIASES and cmd_name not in self._module_of:
            group, sub = ALIASES[cmd_name]
            parent = self._load(group)
            return parent.get_command(ctx, sub) if isinstance(parent, click.Group) else None
        return self._load(cmd_name)

    def list_commands(self, ctx) -> list[str]:
        return sorted(set(self._module_of) | set(self._loaded))

    def shell_complete(self, ctx, incomplete: str) -> list:
        """A TAB on a command name offers the aliases too (``unica iss<TAB>``: ``issue``), beside
        the commands, in one sorted list. Only here: :meth:`list_commands` leaves them out, so
        walks of the command tree see each command once. Offering an alias loads no module."""
        results = super().shell_complete(ctx, incomplete)
        aliases = [alias for alias in ALIASES if alias.startswith(incomplete) and alias not in self._module_of]
        if not aliases:
            return results
        from click.shell_completion import CompletionItem

        results += [CompletionItem(alias, help="-> " + " ".join(ALIASES[alias])) for alias in aliases]
        return sorted(results, key=lambda item: item.value)

    def format_commands(self, ctx, formatter) -> None:
        super().format_commands(ctx, formatter)
        with formatter.section("Aliases"):
            formatter.write_dl([(alias, "-> " + " ".join(target)) for alias, target in ALIASES.items()])

    def invoke(self, ctx):
        global _FREEZE_AT_EXIT
        if not _FREEZE_AT_EXIT:
            # at exit, skip the interpreter's last full garbage collection over everything the
            # command loaded (with SQLAlchemy loaded, a third of a short command's time); what is
            # freed by reference counting still is, files and the database are closed by then
            _FREEZE_AT_EXIT = True
            atexit.register(gc.freeze)
        return super().invoke(ctx)


_FREEZE_AT_EXIT = False


@click.group(cls=_LazyGroup, modules=MODULE_COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="unica")
def cli() -> None:
    """unica: a certification authority toolkit on PKCS#11 tokens.

    Keys are named by URI: ``pkcs11:token=LABEL;object=LABEL`` (a PKCS#11 token, RFC 7512)
    or ``file:PATH`` (an encrypted PKCS#8 key file). Secrets come from UNICA_PIN,
    UNICA_SO_PIN, UNICA_PASSPHRASE, a --*-file option, or a prompt.
    """


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return (and exit with) its status."""
    _prepare_process()
    if os.environ.get("_UNICA_COMPLETE"):  # the shell asks for completions: unica's fish format
        import unica.cli.completion  # noqa: F401
    try:
        # without standalone mode, click returns a command's ctx.exit(N) status instead of raising
        rv = cli.main(args=argv, prog_name="unica", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("unica: aborted", err=True)
        code = 130
    except _NoArgsIsHelp as e:  # a group named alone: its help, as click shows it
        e.show()
        code = e.exit_code
    except click.UsageError as e:
        click.echo(f"unica: error: {_usage_message(e)}", err=True)
        code = EXIT_USAGE
    except click.ClickException as e:
        click.echo(f"unica: error: {_one_line(e.format_message())}", err=True)
        code = e.exit_code
    except click.exceptions.Exit as e:
        code = e.exit_code
    except ApprovalPending as e:  # not a failure: the request waits for its approvers
        click.echo(f"pending: request {e.request_id}: {e.operation} waits for {e.needed - e.have} more "
                   f"approval(s) of {e.needed}, until {e.expires_at:%Y-%m-%d %H:%M}Z "
                   f"(unica approval approve {e.request_id} --as KEY_URI)")
        code = 0
    except UnicaError as e:
        click.echo(f"unica: error: {_one_line(str(e)) or type(e).__name__}", err=True)
        code = e.exit_code
    except KeyboardInterrupt:
        click.echo("unica: interrupted", err=True)
        code = 130
    except BrokenPipeError:
        code = 0
    except Exception as e:  # a bug: still one line, unless debugging
        if os.environ.get("UNICA_DEBUG"):
            raise
        click.echo(
            f"unica: internal error: {type(e).__name__}: {_one_line(str(e))} "
            "(set UNICA_DEBUG=1 for a traceback)",
            err=True,
        )
        code = EXIT_INTERNAL
    else:
        code = rv if isinstance(rv, int) else 0
    if argv is None:
        sys.exit(code)
    return code


def _one_line(text: str) -> str:
    return " ".join(text.split())


#: click >= 8.2 raises this (a UsageError) for a group given no command; older click exits 0
_NoArgsIsHelp = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _usage_message(e: click.UsageError) -> str:
    """``ocsp serve: Invalid value for '--workers': 0 is not in the range x>=1 (see 'unica ocsp
    serve --help')``: the command, click's message, where to read more -- on one line."""
    path = e.ctx.command_path if e.ctx is not None else "unica"
    command = path.partition(" ")[2]
    message = _one_line(e.format_message()).rstrip(".")
    return f"{command + ': ' if command else ''}{message} (see '{path} --help')"


def _prepare_process() -> None:
    """Human output that cannot fail on the terminal's encoding (``PYTHONIOENCODING=latin-1``
    and a Chinese CA name), and no library warnings (e.g. cryptography's) on the operator's
    screen unless debugging."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    if not os.environ.get("UNICA_DEBUG"):
        warnings.simplefilter("ignore")


if __name__ == "__main__":  # pragma: no cover
    main()
