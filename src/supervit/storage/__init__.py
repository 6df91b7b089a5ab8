"""SQLite storage: the group-committing database core and the stores built on it."""

from supervit.storage._batch import DurableLog
from supervit.storage._config_store import ConfigStore, validate_config_value
from supervit.storage._db import Database, Migration
from supervit.storage._lock import LOCK_FILE_NAME, DataDirLock
from supervit.storage._policy import GROUP_COMMIT_BATCHING, NODE_NONCE_BATCHING, REPORT_LOG_BATCHING, BatchPolicy
from supervit.storage._realms import Realm, RealmPage, RealmStatus, RealmStore
from supervit.storage._rider import Rider, riding
from supervit.storage._schema import NODE_DB_FILENAME, NODE_MIGRATIONS, open_node_database

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
