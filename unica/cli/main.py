"""Entry point of the ``unica`` command.

Each area of the CLI lives in its own module under ``unica.cli`` and exposes
``COMMANDS``: a list of click commands or groups added to the root group. The root
turns every :class:`unica.errors.UnicaError` into one line on stderr and the error's
exit code; no traceback reaches the operator (set ``UNICA_DEBUG=1`` to see one).
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from unica import __version__
from unica.errors import UnicaError

#: modules under unica.cli that contribute commands, in help order
COMMAND_MODULES = [
    "key",
    "token",
    "ca",
    "revoke",
    "ocsp",
    "audit",
    "sign",
    "verify",
]

#: exit status for a bug (an exception that is not a UnicaError)
EXIT_INTERNAL = 70


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="unica")
def cli() -> None:
    """unica: a certification authority toolkit on PKCS#11 tokens.

    Keys are named by URI: ``pkcs11:token=LABEL;object=LABEL`` (a PKCS#11 token, RFC 7512)
    or ``file:PATH`` (an encrypted PKCS#8 key file). Secrets come from UNICA_PIN,
    UNICA_SO_PIN, UNICA_PASSPHRASE, a --*-file option, or a prompt.
    """


for _name in COMMAND_MODULES:
    _module = importlib.import_module(f"unica.cli.{_name}")
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return (and exit with) its status."""
    try:
        # without standalone mode, click returns a command's ctx.exit(N) status instead of raising
        rv = cli.main(args=argv, prog_name="unica", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("unica: aborted", err=True)
        code = 130
    except click.ClickException as e:
        e.show()
        code = e.exit_code
    except click.exceptions.Exit as e:
        code = e.exit_code
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


if __name__ == "__main__":  # pragma: no cover
    main()
