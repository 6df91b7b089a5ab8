"""Logging set-up shared by the daemons (``supervit node``, ``supervit supervisor``).

Process tuning (the GIL switch interval) is applied by the daemons themselves: see
:func:`supervit.rpc.tune_for_serving`.
"""

from __future__ import annotations

import logging
import sys

import click

from supervit._exceptions import ConfigError
from supervit.auth import MAKE_SECRET_HINT

__all__ = [
    "ALLOW_EXAMPLE_SECRET_ENV",
    "allow_example_secret_option",
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


_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: int) -> None:
    """Log to stderr (stdout carries only the daemons' machine-readable lines) at ``level``.

    The handler passes everything: logger levels alone decide, so a live LOG_LEVEL change
    (UpdateConfig) takes effect without touching handlers.
    """
    logging.addLevelName(5, "TRACE")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
