"""The ``supervit`` command line: one sync entry point per command; event loops are started only here
(``asyncio.run``, or ``supervit.rpc.run_serving`` for the daemons: ``--event-loop``).

Commands are imported lazily so ``supervit gen-credential`` does not pay for the daemon's imports.

Every failure is one line on stderr in one style, ``supervit <command>: error: <what>``, where
``<command>`` is the command as typed (``supervit ctl realm get: error: …``). Exit status 2 for
usage and configuration errors (bad TLS files included), 1 for runtime failures, 130 on Ctrl-C.
No traceback reaches the user for bad input; an unexpected internal error prints one line too
(``SUPERVIT_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

import click

from supervit._exceptions import ConfigError, SupervitError

__all__ = ["cli", "command_path", "error_line", "main"]

# command name -> "module:attribute"; each module holds one command.
_COMMANDS: dict[str, str] = {
    "gen-credential": "supervit.cli._gen_credential:gen_credential",
    "node": "supervit.cli._node:node",
    "supervisor": "supervit.cli._supervisor:supervisor",
    "ctl": "supervit.cli._ctl:ctl",
    "demo": "supervit.cli._demo:demo",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="supervit")
def cli() -> None:
    """supervit: node agent and reference supervisor for the supervisor.v1 protocol."""


def command_path(args: Sequence[str]) -> str:
    """``supervit ctl realm get`` for ``["ctl", "realm", "get", "7", …]``: the command as typed.

    Walks the command groups along the leading words; stops at the first option or argument.
    """
    words = ["supervit"]
    group: click.Command | None = cli
    ctx = click.Context(cli)
    for arg in args:
        if arg.startswith("-") or not isinstance(group, click.Group):
            break
        try:
            sub = group.get_command(ctx, arg)
        except Exception:  # an import problem must not hide the real error
            sub = None
        if sub is None:
            break
        words.append(arg)
        group = sub
    return " ".join(words)


def error_line(where: str, message: str) -> str:
    """The one error line every command prints: ``<where>: error: <message>``."""
    return f"{where}: error: {str(message).strip()}"


def _warnings_to_stderr(where: str) -> None:
    """Until a daemon sets up its logs: warnings (e.g. a secret file readable by others) as one
    ``supervit <command>: warning: …`` line each, in the style of the error lines."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(f"{where}: warning: %(message)s"))
    root.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: errors become one line on stderr and an exit code.

    Usage errors and invalid configuration exit with 2, other failures with 1.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    _warnings_to_stderr(command_path(args))
    try:
        code = cli.main(args=args, prog_name="supervit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo(f"{command_path(args)}: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(error_line(command_path(args), exc.format_message()), err=True)
        sys.exit(exc.exit_code)
    except SupervitError as exc:
        click.echo(error_line(command_path(args), str(exc)), err=True)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)
    except KeyboardInterrupt:
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        if os.environ.get("SUPERVIT_DEBUG"):
            traceback.print_exc()
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        hint = "" if os.environ.get("SUPERVIT_DEBUG") else " (SUPERVIT_DEBUG=1 shows the traceback)"
        click.echo(error_line(command_path(args), f"internal error: {detail}{hint}"), err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
