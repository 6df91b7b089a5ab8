"""Secrets from files: ``shared_secret_file``, ``secret_file``, ``node_secrets_file``.

A secret file holds the hex text (surrounding whitespace ignored). A file that group or others
may read is still used, with a WARNING naming it and the fix (``chmod 600``). Errors name the key
and the file, never the content.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

from supervit._exceptions import ConfigError

__all__ = ["check_file_permissions", "read_secret_file"]

log = logging.getLogger("supervit.config")


def check_file_permissions(path: Path, key: str) -> str | None:
    """A warning text when ``path`` is readable or writable beyond its owner (looser than 0600)."""
    try:
        mode = stat.S_IMODE(Path(path).stat().st_mode)
    except OSError:
        return None
    if mode & 0o077:
        return (
            f"{key}: secret file {path} has mode {mode:04o}, readable beyond its owner; restrict it: chmod 600 {path}"
        )
    return None


def read_secret_file(path: Path, key: str) -> str:
    """The stripped text of the secret file ``path`` (``key`` names the setting in errors)."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(key, f"secret file not found: {p}") from None
    except IsADirectoryError:
        raise ConfigError(key, f"{p} is a directory, not a secret file") from None
    except OSError as exc:
        raise ConfigError(key, f"cannot read secret file {p}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(key, f"secret file {p} is not text (expected hex characters)") from None
    warning = check_file_permissions(p, key)
    if warning is not None:
        log.warning("%s", warning)
    text = text.strip()
    if not text:
        raise ConfigError(key, f"secret file {p} is empty")
    return text
