"""``supervit node``: run the node daemon from a TOML configuration file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from supervit.cli._runtime import (
    EVENT_LOOP_OPTION,
    LOG_LEVEL_OPTION,
    allow_example_secret_option,
    freeze_startup_heap,
    refuse_example_secrets,
    setup_logging,
)
from supervit.config import load_node_config, python_log_level
from supervit.node import ClientWiring, NodeDaemon, ReportingClient
from supervit.rpc import run_serving

__all__ = ["LISTENING_PREFIX", "METRICS_LISTENING_PREFIX", "node"]

LISTENING_PREFIX = "supervit node listening on "
"""Start of the first line printed on stdout once the server is bound: ``<prefix>host:port``."""
METRICS_LISTENING_PREFIX = "supervit node metrics listening on "
"""Start of the line that follows when metrics are enabled: ``<prefix>host:port`` of /metrics."""


def _supervit_client(wiring: ClientWiring) -> ReportingClient:
    # Imported here: a serve-only node (no endpoint) never loads the client.
    from supervit.client import SupervitClient

    return SupervitClient(
        wiring.config,
        wiring.service_collector,
        metrics=wiring.metrics,
        realm_version=wiring.realm_version,
        on_shutdown=wiring.on_shutdown,
        interceptors=wiring.interceptors,
    )


def _announce(daemon: NodeDaemon) -> None:
    freeze_startup_heap()  # before announcing: nobody is waiting on the collection yet
    # stdout carries only these machine-readable lines (flushed: a parent may be waiting on them).
    click.echo(f"{LISTENING_PREFIX}{daemon.address}")
    if daemon.metrics_address is not None:
        click.echo(f"{METRICS_LISTENING_PREFIX}{daemon.metrics_address}")
    sys.stdout.flush()


@click.command("node")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SUPERVIT_NODE_CONFIG",
    show_envvar=True,
    help="The node TOML file (see docs/configuration.md).",
)
@allow_example_secret_option
@LOG_LEVEL_OPTION
@EVENT_LOOP_OPTION
def node(config_path: Path, allow_example_secret: bool, log_level: str | None, event_loop: str) -> None:
    """Run the node daemon: serve the authenticated SupervisedService until SIGTERM/SIGINT or Shutdown.

    With ``[supervisor.client] endpoint`` set it also registers with and reports to that supervisor.

    Prints "supervit node listening on HOST:PORT" on stdout once serving (useful with port 0),
    then "supervit node metrics listening on HOST:PORT" when [supervisor.metrics] listen is set;
    logs go to stderr. Invalid configuration: one line naming the key, exit 2, nothing started.
    """
    setup_logging(logging.INFO)  # configuration warnings (secret file modes, advertised address) are seen
    config = load_node_config(config_path)
    refuse_example_secrets(config.published_example_secrets(), allow_example_secret)
    sd = config.supervisord
    setup_logging(python_log_level(log_level or sd.log_level), sd.log_format)
    run_serving(NodeDaemon(config, client_factory=_supervit_client).run(on_ready=_announce), event_loop=event_loop)
