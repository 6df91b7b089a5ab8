"""Supervisord: the node's implementation of the nine SupervisedService RPCs.

It performs the operations only; credentials are checked by :class:`~supervit.node.AuthService`
wrapped around it. Outcomes follow the contract:

* business outcomes (duplicate ``realm_id``, unknown realm, config key not found, invalid config
  value, failed applier, refused shutdown) are ``success=false`` (``accepted=false``) with an
  ``error_message`` and status OK;
* a request the stores refuse as malformed (bad page token, out-of-range number) is
  ``INVALID_ARGUMENT``; a store failure is ``INTERNAL`` (never swallowed).

Every response fills its proto2 ``required`` fields, failures included.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import grpc

from supervit._exceptions import InvalidRequestError, StorageError
from supervit.inventory import ServiceCollector
from supervit.metrics import MetricsProvider, SystemMetricsCollector
from supervit.node._appliers import ConfigAppliers, default_appliers
from supervit.protocol import common_pb2, supervised_pb2, supervised_pb2_grpc
from supervit.rpc import abort, abort_for
from supervit.storage import ConfigStore, Database, RealmStore, open_node_database, validate_config_value

__all__ = ["DEFAULT_DATA_DIR", "ShutdownRequestHandler", "Supervisord"]

DEFAULT_DATA_DIR = Path("./supervit-data")
"""Where a Supervisord built without stores keeps ``actrix.db`` (as ``supervit node``'s default)."""

log = logging.getLogger(__name__)

ShutdownRequestHandler = Callable[[bool, int, str | None], Awaitable[None] | None]
"""``handler(graceful, timeout_secs, reason)``: start (schedule) the node's shutdown.

Called before the Shutdown response is sent, so it should only *schedule* the stop. Raising
refuses the request (``accepted=false`` with the error as message). ``timeout_secs`` is the
grace period: the request's ``timeout_secs`` (or the default) when graceful, 0 when immediate.
"""

Ctx = grpc.aio.ServicerContext[Any, Any]
_S = TypeVar("_S", bound="Supervisord")
_Req = TypeVar("_Req")
_R = TypeVar("_R")

_METRICS_TIMEOUT_SECS = 5.0
CONFIG_NOT_FOUND = "Config not found"
DEFAULT_MAX_RESPONSE_BYTES = 3 * 1024 * 1024
"""Realms one ListRealms response carries at most (bytes): well below gRPC's 4 MB send limit."""


def _store_errors(
    method: Callable[[_S, _Req, Ctx], Coroutine[Any, Any, _R]],
) -> Callable[[_S, _Req, Ctx], Coroutine[Any, Any, _R]]:
    """Turn store errors into status codes: InvalidRequestError → INVALID_ARGUMENT, StorageError → INTERNAL."""

    @functools.wraps(method)
    async def wrapper(self: _S, request: _Req, context: Ctx) -> _R:
        try:
            return await method(self, request, context)
        except InvalidRequestError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except StorageError as exc:
            await abort_for(context, exc)

    return wrapper


_REALM_WRITES = frozenset({"CreateRealm", "UpdateRealm", "DeleteRealm"})


def _config_type_name(config_type: int) -> str:
    try:
        return common_pb2.ConfigType.Name(config_type)  # type: ignore[arg-type]
    except ValueError:
        return str(config_type)


class Supervisord(supervised_pb2_grpc.SupervisedServiceServicer):
    """Serves realms, configuration, node information and shutdown for one node.

    ``realm_store`` and ``config_store`` persist realms and config values; left out (the original's
    five-argument form), they are SQLite stores in ``data_dir/actrix.db`` (default
    ``./supervit-data``), opened by :meth:`open` or the first RPC and closed by :meth:`close`. Node information
    reports ``node_id``, ``name``, ``version``, ``location_tag``, the uptime (from ``clock``), the
    metrics of :meth:`with_metrics_provider` (default: a :class:`SystemMetricsCollector` on
    ``data_dir``'s filesystem, created on first use) and the services of ``service_collector``.
    ``appliers`` run for ``UpdateConfig(apply_immediately=true)`` (default:
    :func:`~supervit.node.default_appliers`). ``default_shutdown_timeout_secs`` is the grace
    period of a graceful Shutdown request that gives no ``timeout_secs``. ``max_response_bytes``
    bounds a ListRealms response (see :meth:`ListRealms`).
    """

    def __init__(
        self,
        node_id: str,
        name: str,
        location_tag: str,
        version: str,
        service_collector: ServiceCollector,
        *,
        realm_store: RealmStore | None = None,
        config_store: ConfigStore | None = None,
        data_dir: Path | str = DEFAULT_DATA_DIR,
        clock: Callable[[], float] = time.time,
        appliers: ConfigAppliers | None = None,
        default_shutdown_timeout_secs: int = 10,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.node_id = node_id
        self.name = name
        self.location_tag = location_tag
        self.version = version
        self.service_collector = service_collector
        self._realm_store = realm_store
        self._config_store = config_store
        self._own_db: Database | None = None
        self._stores_lock = asyncio.Lock()
        self.appliers = default_appliers(service_collector) if appliers is None else appliers
        self.default_shutdown_timeout_secs = default_shutdown_timeout_secs
        self.max_response_bytes = max_response_bytes
        self._data_dir = Path(data_dir)
        self._clock = clock
        self._started_at = clock()
        self._metrics: MetricsProvider | None = None
        self._metrics_lock = asyncio.Lock()
        self._shutdown_handler: ShutdownRequestHandler | None = None
        # One lock per (config_type, key) while it is being applied and stored, so two concurrent
        # updates of one key cannot interleave apply(A), apply(B), store(B), store(A) and leave the
        # live state and the stored value disagreeing. Weak values: idle locks disappear.
        self._config_locks: weakref.WeakValueDictionary[tuple[int, str], asyncio.Lock] = weakref.WeakValueDictionary()

    # -- stores ---------------------------------------------------------------------------------

    @property
    def realm_store(self) -> RealmStore:
        """The realm store (given, or the default one once :meth:`open` or a first RPC opened it)."""
        if self._realm_store is None:
            raise RuntimeError("the default stores are not open yet: await supervisord.open()")
        return self._realm_store

    @property
    def config_store(self) -> ConfigStore:
        """The config store (given, or the default one once opened)."""
        if self._config_store is None:
            raise RuntimeError("the default stores are not open yet: await supervisord.open()")
        return self._config_store

    async def open(self) -> Supervisord:
        """Open the default SQLite stores (``actrix.db`` in ``data_dir``) for the stores not given.

        Called by the first RPC that needs a store; call it first to fail early. Returns self.
        """
        async with self._stores_lock:
            if self._realm_store is None or self._config_store is None:
                self._own_db = await open_node_database(self._data_dir)
                log.info("realms and config values in %s", self._data_dir)
                if self._realm_store is None:
                    self._realm_store = RealmStore(self._own_db, clock=self._clock)
                if self._config_store is None:
                    self._config_store = ConfigStore(self._own_db, clock=self._clock)
        return self

    async def close(self) -> None:
        """Close the default database if this Supervisord opened one (given stores are the caller's)."""
        db, self._own_db = self._own_db, None
        if db is not None:
            await db.close()

    def write_database(self, method: str, request: Any) -> Database | None:
        """The database whose one transaction holds every effect of RPC ``method`` on ``request``.

        For CreateRealm, UpdateRealm, DeleteRealm, and UpdateConfig without ``apply_immediately``:
        the store's database, when the store is this package's SQLite store and the method is not
        overridden; else (a read, an applier acting outside the database, a custom store or
        method, stores not open yet) None. :class:`~supervit.node.AuthService` then records the
        request's nonce in that same transaction (one commit per request instead of two).
        """
        cls = type(self)
        if method in _REALM_WRITES:
            store: RealmStore | ConfigStore | None = self._realm_store
            if type(store) is not RealmStore:
                return None
        elif method == "UpdateConfig" and not request.apply_immediately:
            store = self._config_store
            if type(store) is not ConfigStore:
                return None
        else:
            return None
        if getattr(cls, method) is not getattr(Supervisord, method):
            return None  # a subclass's own version may do more than the store write
        return store.database

    async def _realms(self) -> RealmStore:
        if self._realm_store is None:
            await self.open()
        assert self._realm_store is not None
        return self._realm_store

    async def _configs(self) -> ConfigStore:
        if self._config_store is None:
            await self.open()
        assert self._config_store is not None
        return self._config_store

    # -- set-up ---------------------------------------------------------------------------------

    def with_metrics_provider(self, provider: MetricsProvider) -> Supervisord:
        """Report ``provider``'s metrics in GetNodeInfo; returns self."""
        self._metrics = provider
        return self

    def with_shutdown_handler(self, handler: ShutdownRequestHandler) -> Supervisord:
        """Let Shutdown requests call ``handler`` (see :data:`ShutdownRequestHandler`); returns self.

        Without a handler every Shutdown request is refused (``accepted=false``).
        """
        self._shutdown_handler = handler
        return self

    @property
    def uptime_secs(self) -> int:
        """Whole seconds since this Supervisord was created."""
        return max(0, int(self._clock() - self._started_at))

    # -- configuration --------------------------------------------------------------------------

    @_store_errors
    async def UpdateConfig(
        self, request: supervised_pb2.UpdateConfigRequest, context: Ctx
    ) -> supervised_pb2.UpdateConfigResponse:
        """Validate, optionally apply, then store a config value; ``old_value`` is the one replaced."""
        config_type, key = int(request.config_type), request.config_key
        type_name = _config_type_name(config_type)
        try:
            value = validate_config_value(config_type, request.config_value)
        except ValueError as exc:
            return supervised_pb2.UpdateConfigResponse(success=False, error_message=f"invalid {type_name} value: {exc}")
        # Shielded: once begun, apply + store run to completion even if the caller cancels (a
        # cancelled store write may still commit, and undoing the applied change then would
        # leave the live state and the stored value disagreeing).
        task = asyncio.ensure_future(
            self._apply_and_store(config_type, key, value, apply=request.apply_immediately, type_name=type_name)
        )
        task.add_done_callback(_retrieve_exception)
        return await asyncio.shield(task)

    async def _apply_and_store(
        self, config_type: int, key: str, value: str, *, apply: bool, type_name: str
    ) -> supervised_pb2.UpdateConfigResponse:
        lock = self._config_locks.setdefault((config_type, key), asyncio.Lock())
        async with lock:
            undo = None
            if apply:
                # Apply first: a value the node cannot apply must not be stored either.
                try:
                    undo = await self.appliers.apply(config_type, key, value)
                except Exception as exc:
                    log.warning("cannot apply %s %r: %s", type_name, key, exc)
                    return supervised_pb2.UpdateConfigResponse(
                        success=False, error_message=f"cannot apply {type_name} {key!r}: {exc}"
                    )
                if undo is None:
                    log.info("%s has no live applier; %r is stored only", type_name, key)
            try:
                old = await (await self._configs()).set(config_type, key, value)
            except BaseException:
                # Not stored: put the live state back so both still agree.
                if undo is not None:
                    undo()
                raise
        log.info("config %s %r updated%s", type_name, key, " and applied" if undo is not None else "")
        response = supervised_pb2.UpdateConfigResponse(success=True)
        if old is not None:
            response.old_value = old
        return response

    @_store_errors
    async def GetConfig(
        self, request: supervised_pb2.GetConfigRequest, context: Ctx
    ) -> supervised_pb2.GetConfigResponse:
        """The stored value of ``(config_type, config_key)``, or ``success=false`` "Config not found"."""
        value = await (await self._configs()).get(int(request.config_type), request.config_key)
        if value is None:
            return supervised_pb2.GetConfigResponse(success=False, error_message=CONFIG_NOT_FOUND)
        return supervised_pb2.GetConfigResponse(success=True, config_value=value)

    # -- realms ---------------------------------------------------------------------------------

    @_store_errors
    async def CreateRealm(
        self, request: supervised_pb2.CreateRealmRequest, context: Ctx
    ) -> supervised_pb2.CreateRealmResponse:
        """Store a new realm (status ``Normal``); a duplicate ``realm_id`` is a business failure."""
        realm = await (self._realm_store or await self._realms()).create(
            request.realm_id,
            request.name,
            request.enabled,
            request.use_servers,  # ints already; the store checks and copies them
            request.version,
            request.expires_at,
        )
        if realm is None:
            return supervised_pb2.CreateRealmResponse(
                success=False, error_message=f"Realm {request.realm_id} already exists"
            )
        log.info("realm %d created (version %d)", realm.realm_id, realm.version)
        response = supervised_pb2.CreateRealmResponse(success=True)
        realm.copy_to(response.realm)
        return response

    @_store_errors
    async def GetRealm(self, request: supervised_pb2.GetRealmRequest, context: Ctx) -> supervised_pb2.GetRealmResponse:
        """The realm, or ``success=false`` if it does not exist."""
        realm = await (self._realm_store or await self._realms()).get(request.realm_id)
        if realm is None:
            return supervised_pb2.GetRealmResponse(success=False, error_message=_realm_not_found(request.realm_id))
        response = supervised_pb2.GetRealmResponse(success=True)
        realm.copy_to(response.realm)
        return response

    @_store_errors
    async def UpdateRealm(
        self, request: supervised_pb2.UpdateRealmRequest, context: Ctx
    ) -> supervised_pb2.UpdateRealmResponse:
        """Change only the fields present in the request; ``updated_at`` becomes now."""
        realm = await (await self._realms()).update(
            request.realm_id,
            name=request.name if request.HasField("name") else None,
            enabled=request.enabled if request.HasField("enabled") else None,
        )
        if realm is None:
            return supervised_pb2.UpdateRealmResponse(success=False, error_message=_realm_not_found(request.realm_id))
        log.info("realm %d updated", realm.realm_id)
        response = supervised_pb2.UpdateRealmResponse(success=True)
        realm.copy_to(response.realm)
        return response

    @_store_errors
    async def DeleteRealm(
        self, request: supervised_pb2.DeleteRealmRequest, context: Ctx
    ) -> supervised_pb2.DeleteRealmResponse:
        """Remove the realm, or ``success=false`` if it does not exist."""
        if not await (await self._realms()).delete(request.realm_id):
            return supervised_pb2.DeleteRealmResponse(success=False, error_message=_realm_not_found(request.realm_id))
        log.info("realm %d deleted", request.realm_id)
        return supervised_pb2.DeleteRealmResponse(success=True)

    @_store_errors
    async def ListRealms(
        self, request: supervised_pb2.ListRealmsRequest, context: Ctx
    ) -> supervised_pb2.ListRealmsResponse:
        """One page of realms by ``realm_id``; no ``page_size`` (or 0) returns every realm.

        Either way a response stops before it outgrows ``max_response_bytes``: then it carries
        the first chunk and a ``next_page_token`` (a caller that pages gets the rest).

        A ``page_token`` this node did not issue is ``INVALID_ARGUMENT``.
        """
        page = await (await self._realms()).list_page(
            request.page_size if request.HasField("page_size") else None,
            request.page_token if request.HasField("page_token") else None,
        )
        realms: list[common_pb2.RealmInfo] = []
        size, token = 0, page.next_page_token
        for realm in page.realms:
            info = realm.to_proto()
            entry = info.ByteSize() + 8  # tag and length prefix
            if realms and size + entry > self.max_response_bytes:
                # Every realm would not fit in one response: this chunk, and where the next starts.
                token = self.realm_store.page_token_after(realms[-1].realm_id)
                break
            realms.append(info)
            size += entry
        response = supervised_pb2.ListRealmsResponse(success=True, realms=realms, total_count=page.total_count)
        if token is not None:
            response.next_page_token = token
        return response

    # -- node -----------------------------------------------------------------------------------

    async def GetNodeInfo(
        self, request: supervised_pb2.GetNodeInfoRequest, context: Ctx
    ) -> supervised_pb2.GetNodeInfoResponse:
        """Identity, uptime, current metrics (omitted if they cannot be read) and services."""
        response = supervised_pb2.GetNodeInfoResponse(
            success=True,
            node_id=self.node_id,
            name=self.name,
            version=self.version,
            location_tag=self.location_tag,
            uptime_secs=self.uptime_secs,
            services=self.service_collector.statuses(),
        )
        metrics = await self._current_metrics()
        if metrics is not None:
            response.current_metrics.CopyFrom(metrics)
        return response

    async def _current_metrics(self) -> common_pb2.SystemMetrics | None:
        try:
            async with asyncio.timeout(_METRICS_TIMEOUT_SECS):
                provider = await self._metrics_provider()
                return (await provider.snapshot()).metrics
        except Exception as exc:
            # current_metrics is optional: node info without metrics beats no node info.
            log.warning("cannot read system metrics for GetNodeInfo: %s", exc or type(exc).__name__)
            return None

    async def _metrics_provider(self) -> MetricsProvider:
        async with self._metrics_lock:  # one default collector even under concurrent first calls
            if self._metrics is None:
                self._metrics = await SystemMetricsCollector.create(self._data_dir)
            return self._metrics

    async def Shutdown(self, request: supervised_pb2.ShutdownRequest, context: Ctx) -> supervised_pb2.ShutdownResponse:
        """Hand the request to the shutdown handler; ``estimated_shutdown_time`` is when it will be down.

        Graceful: now + ``timeout_secs`` (default :attr:`default_shutdown_timeout_secs`);
        immediate: now. A negative ``timeout_secs`` is ``INVALID_ARGUMENT``.
        """
        if request.HasField("timeout_secs") and request.timeout_secs < 0:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"timeout_secs must not be negative (got {request.timeout_secs})",
            )
        graceful = request.graceful
        timeout = (
            (request.timeout_secs if request.HasField("timeout_secs") else self.default_shutdown_timeout_secs)
            if graceful
            else 0
        )
        reason = request.reason if request.HasField("reason") else None
        handler = self._shutdown_handler
        if handler is None:
            return supervised_pb2.ShutdownResponse(
                accepted=False, error_message="shutdown is not supported by this node (no shutdown handler)"
            )
        log.warning(
            "shutdown requested (%s, timeout %ds)%s",
            "graceful" if graceful else "immediate",
            timeout,
            f": {reason}" if reason else "",
        )
        try:
            result = handler(graceful, timeout, reason)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            log.warning("shutdown request refused: %s", exc)
            return supervised_pb2.ShutdownResponse(accepted=False, error_message=f"shutdown refused: {exc}")
        return supervised_pb2.ShutdownResponse(accepted=True, estimated_shutdown_time=int(self._clock()) + timeout)


def _retrieve_exception(task: asyncio.Future[Any]) -> None:
    # If the caller was cancelled nobody awaits the shielded task: fetch its error so asyncio
    # does not report it as "never retrieved" (it was logged or mapped where it happened).
    if not task.cancelled():
        task.exception()


def _realm_not_found(realm_id: int) -> str:
    return f"Realm {realm_id} not found"
