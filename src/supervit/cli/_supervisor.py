"""``supervit supervisor``: run the reference supervisor from a TOML configuration file."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import click

from supervit._exceptions import ConfigError
from supervit.cli._runtime import (
    EVENT_LOOP_OPTION,
    LOG_LEVEL_OPTION,
    allow_example_secret_option,
    freeze_startup_heap,
    refuse_example_secrets,
    setup_logging,
)
from supervit.config import python_log_level
from supervit.rpc import run_serving
from supervit.supervisor import Supervisor, SupervisorConfig, load_supervisor_config

__all__ = ["ADMIN_LISTENING_PREFIX", "LISTENING_PREFIX", "METRICS_LISTENING_PREFIX", "supervisor"]

LISTENING_PREFIX = "supervit supervisor listening on "
"""Start of the stdout line printed once SupervisorService is bound: ``<prefix>host:port``."""
ADMIN_LISTENING_PREFIX = "supervit supervisor admin listening on "
"""Start of the stdout line printed once the admin service is bound (only when it is enabled)."""
METRICS_LISTENING_PREFIX = "supervit supervisor metrics listening on "
"""Start of the last stdout line, when metrics are enabled: ``<prefix>host:port`` of /metrics."""


def _announce(running: Supervisor) -> None:
    freeze_startup_heap()  # before announcing: nobody is waiting on the collection yet
    # stdout carries only these machine-readable lines (flushed: a parent may be waiting on them).
    click.echo(f"{LISTENING_PREFIX}{running.address}")
    if running.admin_address is not None:
        click.echo(f"{ADMIN_LISTENING_PREFIX}{running.admin_address}")
    if running.metrics_address is not None:
        click.echo(f"{METRICS_LISTENING_PREFIX}{running.metrics_address}")
    sys.stdout.flush()


_CONFIG_HELP = "The supervisor TOML file (see docs/supervisor.md)."


def _config_option(required: bool) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return click.option(
        "--config",
        "config_path",
        required=required,
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="SUPERVIT_SUPERVISOR_CONFIG",
        show_envvar=True,
        help=_CONFIG_HELP,
    )


@click.group("supervisor", invoke_without_command=True)
@_config_option(required=False)
@allow_example_secret_option
@LOG_LEVEL_OPTION
@EVENT_LOOP_OPTION
@click.pass_context
def supervisor(
    ctx: click.Context, config_path: Path | None, allow_example_secret: bool, log_level: str | None, event_loop: str
) -> None:
    """Run the supervisor: SupervisorService for the nodes, SupervisorAdmin for `supervit ctl`.

    Prints "supervit supervisor listening on HOST:PORT" (and "supervit supervisor admin listening
    on HOST:PORT" when [admin] secret is set, then "supervit supervisor metrics listening on
    HOST:PORT" when [metrics] listen is set) on stdout once serving; logs go to stderr. Stops
    cleanly on SIGTERM/SIGINT. Invalid configuration: one line naming the key, exit 2.

    The subcommands manage its store: migrate (schema), export and import (SQLite to PostgreSQL).
    """
    if ctx.invoked_subcommand is not None:
        return
    if config_path is None:
        raise click.UsageError("Missing option '--config'.")
    setup_logging(logging.INFO)  # configuration warnings (secret file modes) are seen
    config = load_supervisor_config(config_path)
    refuse_example_secrets(config.published_example_secrets(), allow_example_secret)
    level = python_log_level(log_level) if log_level else config.python_log_level
    setup_logging(level, config.server.log_format)
    run_serving(Supervisor(config).run(on_ready=_announce), event_loop=event_loop)


def _store_name(config: SupervisorConfig) -> str:
    srv = config.server
    return f"PostgreSQL schema {srv.database_schema!r}" if srv.database_url else f"{srv.data_dir}/supervisor.db"


@supervisor.command("migrate")
@_config_option(required=True)
@click.option("--check", is_flag=True, help="Only report; exit 1 if a schema step is not applied yet.")
def migrate(config_path: Path, check: bool) -> None:
    """Apply the store's schema migrations (the supervisor also does at start-up, under a lock).

    With --check nothing is changed: exit 0 when the schema is current, 1 when steps are pending.
    """
    from supervit.supervisor import PendingMigrations, check_sqlite_schema, migrate_postgres

    config = load_supervisor_config(config_path)
    where = _store_name(config)
    if config.server.database_url is None:
        current, pending = check_sqlite_schema(config)
        if check or not pending:
            _report_schema(where, current, pending, check)
            return
        asyncio.run(_open_and_close_sqlite(config))
        click.echo(f"{where}: migrated from v{current} to v{pending[-1]}")
        return
    try:
        current, applied = asyncio.run(migrate_postgres(config, check_only=check))
    except PendingMigrations as exc:
        _report_schema(where, exc.current, exc.pending, True)
        return
    if applied:
        click.echo(f"{where}: migrated from v{current} to v{applied[-1]}")
    else:
        click.echo(f"{where}: schema is current (v{current})")


def _report_schema(where: str, current: int, pending: list[int], check: bool) -> None:
    if not pending:
        click.echo(f"{where}: schema is current (v{current})")
        return
    click.echo(f"{where}: schema at v{current}; not applied: {', '.join(f'v{v}' for v in pending)}")
    if check:
        sys.exit(1)


async def _open_and_close_sqlite(config: SupervisorConfig) -> None:
    from supervit.supervisor import SqliteStore

    store = await SqliteStore.open(config)
    await store.close()


@supervisor.command("export")
@_config_option(required=True)
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The JSON file to write."
)
def export(config_path: Path, out: Path) -> None:
    """Write an embedded (SQLite) supervisor's registry, catalog and pending directives to a file.

    Run it while that supervisor is stopped; load the file with `supervit supervisor import`.
    """
    from supervit.supervisor import export_sqlite

    config = load_supervisor_config(config_path)
    if config.server.database_url is not None:
        raise ConfigError("server.database_url", "export reads an embedded (SQLite) supervisor: unset it")
    counts = asyncio.run(export_sqlite(config, out))
    click.echo(f"exported {_counts(counts)} from {_store_name(config)} to {out}")


@supervisor.command("import")
@_config_option(required=True)
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A file written by `supervit supervisor export`.",
)
def import_(config_path: Path, source: Path) -> None:
    """Load an export file into the configured PostgreSQL schema (which must be empty)."""
    from supervit.supervisor import import_postgres

    config = load_supervisor_config(config_path)
    if config.server.database_url is None:
        raise ConfigError("server.database_url", "import needs the PostgreSQL database to load into")
    counts = asyncio.run(import_postgres(config, source))
    click.echo(f"imported {_counts(counts)} into {_store_name(config)}")


def _counts(counts: dict[str, int]) -> str:
    return f"{counts['nodes']} node(s), {counts['catalog']} catalog entr(y/ies), {counts['directives']} directive(s)"
