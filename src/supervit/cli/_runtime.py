"""Process set-up shared by the daemons (``supervit node``, ``supervit supervisor``): logging, metrics,
the example-secret guard.

Process tuning (the collector's threshold) is applied by the daemons
themselves: see :func:`supervit.rpc.tune_for_serving`. The command, which owns its process, also
freezes the heap it started with (:func:`freeze_startup_heap`).
"""

from __future__ import annotations

import gc
import logging

import click
from prometheus_client import disable_created_metrics

from supervit._exceptions import ConfigError
from supervit.auth import MAKE_SECRET_HINT
from supervit.protocol import LOG_LEVELS
from supervit.rpc import EVENT_LOOP_ENV, EVENT_LOOPS, event_loop_factory
from supervit.telemetry import configure_logging

__all__ = [
    "ALLOW_EXAMPLE_SECRET_ENV",
    "EVENT_LOOP_ENV",
    "EVENT_LOOP_OPTION",
    "LOG_LEVEL_OPTION",
    "allow_example_secret_option",
    "freeze_startup_heap",
    "refuse_example_secrets",
    "setup_logging",
]

ALLOW_EXAMPLE_SECRET_ENV = "SUPERVIT_ALLOW_EXAMPLE_SECRET"

allow_example_secret_option = click.option(
    "--allow-example-secret",
    is_flag=True,
    envvar=ALLOW_EXAMPLE_SECRET_ENV,
    show_envvar=True,
    help="Accept a secret published in examples (anyone can sign with it): for throwaway tests only.",
)


def refuse_example_secrets(keys: list[str], allowed: bool) -> None:
    """A daemon refuses secrets published in examples unless explicitly allowed (then it warns)."""
    if not keys:
        return
    if allowed:
        logging.getLogger("supervit").warning(
            "%s: the published example secret is in use (--allow-example-secret): anyone can sign as this fleet",
            ", ".join(keys),
        )
        return
    raise ConfigError(
        keys[0],
        f"is the published example secret, which anyone can sign with; {MAKE_SECRET_HINT}"
        " (or pass --allow-example-secret for a throwaway test)",
    )


def setup_logging(level: int, log_format: str = "text") -> None:
    """Log to stderr (stdout carries only the daemons' machine-readable lines) at ``level``, as
    ``text`` or ``json`` lines (:func:`supervit.telemetry.configure_logging`); trim the metrics.

    The handler passes everything: logger levels alone decide, so a live LOG_LEVEL change
    (UpdateConfig) takes effect without touching handlers.
    """
    configure_logging(level, log_format)
    # No `*_created` series next to every counter and histogram: they double the series count and
    # the gRPC dashboards do not use them (process-wide, hence here and not in the library).
    disable_created_metrics()  # type: ignore[no-untyped-call]


LOG_LEVEL_OPTION = click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default=None,
    help="Override the configured log level.",
)
"""``--log-level`` for the daemon commands (overrides the configuration file)."""


def freeze_startup_heap() -> None:
    """Collect once, then exempt every object alive now from later collections (``gc.freeze``).

    Called by the daemon commands once serving has started: what exists then (modules, protobuf
    descriptors, the loaded stores) lives as long as the process, yet every full collection used
    to traverse it again (~25 ms each, several a minute under load). Only the command does this,
    not ``start()``: a program embedding a daemon owns its heap. Objects frozen here are still
    freed by reference counting; only a cycle among them would be kept.
    """
    gc.collect()
    gc.freeze()


def _check_event_loop(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        event_loop_factory(value)
    except ConfigError as exc:
        raise click.BadParameter(exc.reason, ctx=ctx, param=param) from None
    return value


EVENT_LOOP_OPTION = click.option(
    "--event-loop",
    type=click.Choice(EVENT_LOOPS, case_sensitive=False),
    default="auto",
    show_default=True,
    envvar=EVENT_LOOP_ENV,
    show_envvar=True,
    callback=_check_event_loop,
    help="The event loop to serve on: auto takes uvloop when installed (supervit[uvloop]), else asyncio's.",
)
"""``--event-loop`` for the commands that serve (see :data:`supervit.rpc.EVENT_LOOPS`)."""
