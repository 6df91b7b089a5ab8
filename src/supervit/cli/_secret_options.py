"""``--x-secret`` / ``--x-secret-file`` pairs of the command line (light: no grpc import)."""

from __future__ import annotations

from pathlib import Path

import click

from supervit._exceptions import ConfigError
from supervit.config import read_secret_file

__all__ = ["pick_secret"]


def pick_secret(value: str | None, file: Path | None, option: str, file_option: str) -> str | None:
    """The secret text from ``--x-secret`` or ``--x-secret-file`` (an explicit option beats an
    environment variable; both given the same way is a usage error)."""
    if value is not None and file is not None:
        ctx = click.get_current_context(silent=True)
        if ctx is not None:
            source_value = ctx.get_parameter_source(option.lstrip("-").replace("-", "_"))
            source_file = ctx.get_parameter_source(file_option.lstrip("-").replace("-", "_"))
            command_line = click.core.ParameterSource.COMMANDLINE
            if source_value == command_line and source_file != command_line:
                return value
            if source_file == command_line and source_value != command_line:
                return _read_secret(file, file_option)
        raise click.UsageError(f"give either {option} or {file_option}, not both")
    if file is not None:
        return _read_secret(file, file_option)
    return value


def _read_secret(path: Path, option: str) -> str:
    try:
        return read_secret_file(path, option)
    except ConfigError as exc:
        raise click.BadParameter(exc.reason, param_hint=option) from None
