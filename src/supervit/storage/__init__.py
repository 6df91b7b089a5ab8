"""SQLite storage: the group-committing database core and the stores built on it."""

from typing import TYPE_CHECKING

from supervit._lazy import lazy_exports

if TYPE_CHECKING:
    from supervit.storage._batch import DurableLog
    from supervit.storage._config_store import ConfigStore, validate_config_value
    from supervit.storage._db import Database, Migration
    from supervit.storage._lock import LOCK_FILE_NAME, DataDirLock
    from supervit.storage._policy import GROUP_COMMIT_BATCHING, NODE_NONCE_BATCHING, REPORT_LOG_BATCHING, BatchPolicy
    from supervit.storage._realms import Realm, RealmPage, RealmStatus, RealmStore
    from supervit.storage._rider import Rider, riding
    from supervit.storage._schema import NODE_DB_FILENAME, NODE_MIGRATIONS, open_node_database
else:
    # Imported on first use (supervit/_lazy.py); the block above, for type checkers, names the same.
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "supervit.storage._batch": ("DurableLog",),
            "supervit.storage._config_store": (
                "ConfigStore",
                "validate_config_value",
            ),
            "supervit.storage._db": (
                "Database",
                "Migration",
            ),
            "supervit.storage._lock": (
                "LOCK_FILE_NAME",
                "DataDirLock",
            ),
            "supervit.storage._policy": (
                "GROUP_COMMIT_BATCHING",
                "NODE_NONCE_BATCHING",
                "REPORT_LOG_BATCHING",
                "BatchPolicy",
            ),
            "supervit.storage._realms": (
                "Realm",
                "RealmPage",
                "RealmStatus",
                "RealmStore",
            ),
            "supervit.storage._rider": (
                "Rider",
                "riding",
            ),
            "supervit.storage._schema": (
                "NODE_DB_FILENAME",
                "NODE_MIGRATIONS",
                "open_node_database",
            ),
        },
    )

__all__ = [
    "GROUP_COMMIT_BATCHING",
    "LOCK_FILE_NAME",
    "NODE_DB_FILENAME",
    "NODE_MIGRATIONS",
    "NODE_NONCE_BATCHING",
    "REPORT_LOG_BATCHING",
    "BatchPolicy",
    "ConfigStore",
    "DataDirLock",
    "Database",
    "DurableLog",
    "Migration",
    "Realm",
    "RealmPage",
    "RealmStatus",
    "RealmStore",
    "Rider",
    "open_node_database",
    "riding",
    "validate_config_value",
]
