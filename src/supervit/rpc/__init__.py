"""gRPC plumbing shared by the node and the supervisor: precise request checking, limits, server set-up."""

from typing import TYPE_CHECKING

from supervit._lazy import lazy_exports

if TYPE_CHECKING:
    from supervit.rpc._authenticated import RequestAuthenticator, authenticated
    from supervit.rpc._handlers import StorageObserver, abort, abort_for, current_request_bytes, service_handler
    from supervit.rpc._health import StorageHealth
    from supervit.rpc._limits import (
        ADMIN_LIMITS,
        MAX_STORABLE_INT,
        SUPERVISED_LIMITS,
        SUPERVISOR_LIMITS,
        RequestValidator,
        ServiceLimits,
        default_limits,
        with_overrides,
    )
    from supervit.rpc._memory import MemoryTrimmer, resident_bytes
    from supervit.rpc._refusals import RefusalLog
    from supervit.rpc._server import DEFAULT_MAX_CONCURRENT_RPCS, DEFAULT_MAX_MESSAGE_BYTES, RpcServer, ServerTLS
    from supervit.rpc._tuning import (
        EVENT_LOOP_ENV,
        EVENT_LOOPS,
        event_loop_factory,
        event_loop_name,
        run_serving,
        tune_for_serving,
    )
else:
    # Imported on first use (supervit/_lazy.py); the block above, for type checkers, names the same.
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "supervit.rpc._authenticated": (
                "RequestAuthenticator",
                "authenticated",
            ),
            "supervit.rpc._handlers": (
                "StorageObserver",
                "abort",
                "abort_for",
                "current_request_bytes",
                "service_handler",
            ),
            "supervit.rpc._health": ("StorageHealth",),
            "supervit.rpc._limits": (
                "ADMIN_LIMITS",
                "MAX_STORABLE_INT",
                "SUPERVISED_LIMITS",
                "SUPERVISOR_LIMITS",
                "RequestValidator",
                "ServiceLimits",
                "default_limits",
                "with_overrides",
            ),
            "supervit.rpc._memory": (
                "MemoryTrimmer",
                "resident_bytes",
            ),
            "supervit.rpc._refusals": ("RefusalLog",),
            "supervit.rpc._server": (
                "DEFAULT_MAX_CONCURRENT_RPCS",
                "DEFAULT_MAX_MESSAGE_BYTES",
                "RpcServer",
                "ServerTLS",
            ),
            "supervit.rpc._tuning": (
                "EVENT_LOOP_ENV",
                "EVENT_LOOPS",
                "event_loop_factory",
                "event_loop_name",
                "run_serving",
                "tune_for_serving",
            ),
        },
    )

__all__ = [
    "ADMIN_LIMITS",
    "DEFAULT_MAX_CONCURRENT_RPCS",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "EVENT_LOOPS",
    "EVENT_LOOP_ENV",
    "MAX_STORABLE_INT",
    "SUPERVISED_LIMITS",
    "SUPERVISOR_LIMITS",
    "MemoryTrimmer",
    "RefusalLog",
    "RequestAuthenticator",
    "RequestValidator",
    "RpcServer",
    "ServerTLS",
    "ServiceLimits",
    "StorageHealth",
    "StorageObserver",
    "abort",
    "abort_for",
    "authenticated",
    "current_request_bytes",
    "default_limits",
    "event_loop_factory",
    "event_loop_name",
    "resident_bytes",
    "run_serving",
    "service_handler",
    "tune_for_serving",
    "with_overrides",
]
