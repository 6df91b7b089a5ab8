"""``supervit supervisor``: run the reference supervisor from a TOML configuration file."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from supervit.cli._runtime import setup_logging
from supervit.supervisor import Supervisor, load_supervisor_config

__all__ = ["ADMIN_LISTENING_PREFIX", "LISTENING_PREFIX", "supervisor"]

LISTENING_PREFIX = "supervit supervisor listening on "
"""Start of the stdout line printed once SupervisorService is bound: ``<prefix>host:port``."""
ADMIN_LISTENING_PREFIX = "supervit supervisor admin listening on "
"""Start of the stdout line printed once the admin service is bound (only when it is enabled)."""


def _announce(running: Supervisor) -> None:
    # stdout carries only these machine-readable lines (flushed: a parent may be waiting on them).
    click.echo(f"{LISTENING_PREFIX}{running.address}")
    if running.admin_address is not None:
        click.echo(f"{ADMIN_LISTENING_PREFIX}{running.admin_address}")
    sys.stdout.flush()


@click.command("supervisor")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SUPERVIT_SUPERVISOR_CONFIG",
    show_envvar=True,
    help="The supervisor TOML file (see docs/supervisor.md).",
)
def supervisor(config_path: Path) -> None:
    """Run the supervisor: SupervisorService for the nodes, SupervisorAdmin for `supervit ctl`.

    Prints "supervit supervisor listening on HOST:PORT" (and "supervit supervisor admin listening
    on HOST:PORT" when [admin] secret is set) on stdout once serving; logs go to stderr. Stops
    cleanly on SIGTERM/SIGINT. Invalid configuration: one line naming the key, exit 2.
    """
    config = load_supervisor_config(config_path)
    setup_logging(config.python_log_level)
    asyncio.run(Supervisor(config).run(on_ready=_announce))
