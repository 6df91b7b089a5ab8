"""The public surface: pinned, sorted, and every exported name importable (httpx style)."""

from __future__ import annotations

import supervit

EXPECTED = [
    "AuthError",
    "AuthService",
    "ConfigError",
    "ConnectionState",
    "ConnectionStatus",
    "CredentialVerifier",
    "InvalidRequestError",
    "InvalidSignatureError",
    "MemoryNonceStorage",
    "MetricsProvider",
    "NodeConfig",
    "NodeDaemon",
    "NonceReusedError",
    "NonceStorage",
    "NonceStorageError",
    "NotFoundError",
    "NotRegisteredError",
    "RpcError",
    "ServiceCollector",
    "ServiceInfo",
    "ServiceState",
    "SharedSecret",
    "Signer",
    "Snapshot",
    "SqliteNonceStorage",
    "StaticMetricsProvider",
    "StorageError",
    "StoreUnavailableError",
    "Supervisor",
    "SupervisorConfig",
    "Supervisord",
    "SupervitClient",
    "SupervitConfig",
    "SupervitError",
    "SystemMetricsCollector",
    "TimestampOutOfRangeError",
    "__version__",
    "add_supervised_service",
    "load_node_config",
    "load_supervisor_config",
    "power_reserve_level",
]


def test_all_is_pinned() -> None:
    """Changing the public API is a deliberate act: update this list with it."""
    assert supervit.__all__ == EXPECTED


def test_all_is_sorted() -> None:
    """__all__ is sorted isort-style (constants, then classes, then functions), as ruff keeps it."""

    def key(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert supervit.__all__ == sorted(supervit.__all__, key=key)


def test_every_public_name_is_exported() -> None:
    """No public attribute of the package escapes __all__ (besides subpackages)."""
    import types

    public = {
        name
        for name, value in vars(supervit).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(supervit.__all__)


def test_exceptions_share_one_root() -> None:
    """Every exported exception derives from SupervitError."""
    for name in supervit.__all__:
        obj = getattr(supervit, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, supervit.SupervitError), name


def test_public_api_has_docstrings() -> None:
    """Every exported class and function documents itself."""
    for name in supervit.__all__:
        obj = getattr(supervit, name)
        if callable(obj):
            assert obj.__doc__, name
