"""Read a node data directory's committed nonces over a separate connection (what a restart sees)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

# Makes every realm INSERT fail on its own (the statement aborts and rolls back alone), as a write
# that fails for its own reasons does, while the rest of its transaction commits.
REFUSE_REALM_INSERTS = (
    "CREATE TRIGGER refuse_realm_inserts BEFORE INSERT ON realms BEGIN SELECT RAISE(ABORT, 'realm insert refused'); END"
)


def _log_table(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT nonces FROM accepted_nonces ORDER BY batch_id")
        return [n for (text,) in rows for n in json.loads(text)]


def companion_nonces(data_dir: Path) -> list[str]:
    """Nonces committed in actrix.db's ``accepted_nonces`` (riding realm/config writes; one row per
    group commit)."""
    return _log_table(data_dir / "actrix.db")


def logged_nonces(data_dir: Path) -> list[str]:
    """Nonces committed in nonce.db's log (one row per group commit)."""
    return _log_table(data_dir / "nonce.db")
