"""The unica command tree, walked from click's root, for tests that check every command."""

from __future__ import annotations

import click


def all_commands(command: click.Command, path: tuple[str, ...] = ()):
    """(path, command) of ``command`` and everything below it, groups included, by name; the
    root's aliases are not commands of their own (``Group.commands`` leaves them out)."""
    yield path, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            yield from all_commands(command.commands[name], (*path, name))


def leaf_commands(command: click.Command, path: tuple[str, ...] = ()):
    """(path, command) of each visible leaf command below ``command``, in click's listing order."""
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not getattr(sub, "hidden", False):
                yield from leaf_commands(sub, (*path, name))
    else:
        yield path, command
