"""Read a node data directory's committed nonces over a separate connection (what a restart sees)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path


def companion_nonces(data_dir: Path) -> list[str]:
    """Nonces committed in actrix.db's ``accepted_nonces`` (one row each, riding realm/config writes)."""
    with sqlite3.connect(data_dir / "actrix.db") as conn:
        return [n for (n,) in conn.execute("SELECT nonce FROM accepted_nonces ORDER BY rowid")]


def logged_nonces(data_dir: Path) -> list[str]:
    """Nonces committed in nonce.db's log (one row per group commit)."""
    with sqlite3.connect(data_dir / "nonce.db") as conn:
        return [n for (text,) in conn.execute("SELECT nonces FROM accepted_nonces") for n in json.loads(text)]
