"""The ``supervit`` command line: one sync entry point per command, ``asyncio.run`` only here.

Commands are imported lazily so ``supervit gen-credential`` does not pay for the daemon's imports.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import click

from supervit._exceptions import SupervitError

__all__ = ["cli", "main"]

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


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: errors become one line on stderr and an exit code.

    Usage errors and invalid configuration exit with 2, other failures with 1.
    """
    try:
        code = cli.main(args=list(argv) if argv is not None else None, prog_name="supervit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("supervit: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        where = f" {exc.ctx.command_path}" if isinstance(exc, click.UsageError) and exc.ctx else ""
        where = where.removeprefix(" supervit")
        click.echo(f"supervit{where}: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except SupervitError as exc:
        from supervit._exceptions import ConfigError

        click.echo(f"supervit: error: {exc}", err=True)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
