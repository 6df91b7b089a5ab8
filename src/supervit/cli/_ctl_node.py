"""``supervit ctl realm|config|node``: signed calls to one node's SupervisedService.

The node is given by ``--node HOST:PORT --node-id ID --shared-secret HEX`` (or the environment:
``SUPERVIT_NODE``, ``SUPERVIT_NODE_ID``, ``SUPERVIT_SHARED_SECRET``), or by the node's own TOML
file with ``--config node.toml`` (its address, id and secret; explicit options win).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import grpc

from supervit._exceptions import RpcError
from supervit.auth import SharedSecret
from supervit.cli._ctl_common import (
    ADDRESS_FORMS,
    CtlError,
    echo_json,
    failure,
    json_option,
    message_dict,
    parse_enum,
    parse_target,
    pick_secret,
    run,
    table,
    when,
)
from supervit.client import RealmInfo, RequestRefusedError, SupervisedClient
from supervit.config import load_node_config
from supervit.protocol import common_pb2

__all__ = ["NodeTarget", "config_group", "node_group", "realm_group"]

T = TypeVar("T")
_RESOURCE_TYPES = {k: int(v) for k, v in common_pb2.ResourceType.items() if v}
_CONFIG_TYPES = {k: int(v) for k, v in common_pb2.ConfigType.items() if v}


@dataclass
class NodeTarget:
    """Where and how to call one node; ``async with target.session() as node:`` gives a
    :class:`~supervit.client.SupervisedClient` whose failures leave the block as :class:`CtlError`."""

    address: str
    node_id: str
    secret: SharedSecret
    timeout: float = 10.0
    credentials: grpc.ChannelCredentials | None = None
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        return f"node {self.node_id} at {self.address}"

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[SupervisedClient]:
        """A client for this node; any failure, ``success=false`` included, becomes one CtlError line."""
        client = SupervisedClient(
            self.address,
            self.node_id,
            self.secret,
            timeout=self.timeout,
            credentials=self.credentials,
            options=self.options,
        )
        try:
            async with client:
                yield client
        except RequestRefusedError as exc:
            raise CtlError(f"{exc.method} failed on {self.label}: {exc.details}") from None
        except RpcError as exc:
            # The node's status line names no method: the command already says what was asked.
            status = RpcError("", exc.code, exc.details)
            raise failure(status, self.label, "check --node-id and the shared secret", self.timeout) from None


def _from_config(path: Path, need_address: bool) -> tuple[str | None, str, str, grpc.ChannelCredentials | None]:
    config = load_node_config(path)
    sd = config.supervisord
    address: str | None = None
    if need_address:
        if sd.port == 0 and not config.supervisor.client.agent_addr:
            raise click.UsageError(f"{path} has port 0 (any free port): give the node's actual address with --node")
        address = config.agent_addr()
    creds = None
    if sd.tls_cert is not None:
        # Without --ca-cert, trust the node's own certificate (right for a self-signed one).
        creds = grpc.ssl_channel_credentials(Path(sd.tls_cert).read_bytes())
    return address, config.node_id, config.supervisor.client.shared_secret, creds


def _read(path: Path | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()


def node_options(f: Callable[..., None]) -> Callable[..., None]:
    """Add the node connection options to a command; it receives ``target: NodeTarget`` instead.

    Explicit options (and their environment variables) always win over ``--config``.
    """

    @functools.wraps(f)
    def wrapper(
        *args: Any,
        node: str | None,
        node_id: str | None,
        shared_secret: str | None,
        shared_secret_file: Path | None,
        config_path: Path | None,
        ca_cert: Path | None,
        tls_domain: str | None,
        client_cert: Path | None,
        client_key: Path | None,
        timeout: float,
        **kwargs: Any,
    ) -> None:
        creds = None
        secret_text = pick_secret(shared_secret, shared_secret_file, "--shared-secret", "--shared-secret-file")
        if config_path is not None:
            addr, cid, config_secret, creds = _from_config(config_path, need_address=node is None)
            node, node_id, secret_text = node or addr, node_id or cid, secret_text or config_secret
        missing = [n for n, v in (("--node", node), ("--node-id", node_id), ("--shared-secret", secret_text)) if not v]
        if missing:
            raise click.UsageError(f"missing {', '.join(missing)} (or give the node's --config node.toml)")
        assert node and node_id and secret_text
        parsed = parse_target(node, "--node")
        secret = SharedSecret.from_hex(secret_text, field="--shared-secret")
        if (client_cert is None) != (client_key is None):
            raise click.UsageError("--client-cert and --client-key go together")
        if ca_cert or client_cert:
            creds = grpc.ssl_channel_credentials(_read(ca_cert), _read(client_key), _read(client_cert))
        elif parsed.tls and creds is None:
            creds = grpc.ssl_channel_credentials()  # https:// without --ca-cert: the system's roots
        if parsed.tls is False and creds is not None and (ca_cert or client_cert):
            raise click.UsageError(f"--node {node} says http:// but TLS options are given; use https://")
        options = (("grpc.ssl_target_name_override", tls_domain),) if tls_domain else ()
        target = NodeTarget(parsed.address, node_id, secret, timeout, creds, options)
        f(*args, target=target, **kwargs)

    decorators = [
        click.option(
            "--node",
            envvar=["SUPERVIT_SUPERVISOR__CLIENT__AGENT_ADDR", "SUPERVIT_NODE"],
            show_envvar=True,
            help=f"The node's address: {ADDRESS_FORMS}.",
        ),
        click.option(
            "--node-id",
            envvar=["SUPERVIT_SUPERVISOR__CLIENT__NODE_ID", "SUPERVIT_NODE_ID"],
            show_envvar=True,
            help="The node's id (signed payloads).",
        ),
        click.option(
            "--shared-secret",
            envvar=["SUPERVIT_SUPERVISOR__CLIENT__SHARED_SECRET", "SUPERVIT_SHARED_SECRET"],
            show_envvar=True,
            help="The node's hex secret. Prefer the env var or a file: command lines are visible to other users.",
        ),
        click.option(
            "--shared-secret-file",
            envvar="SUPERVIT_SUPERVISOR__CLIENT__SHARED_SECRET_FILE",
            show_envvar=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="Read the node's hex secret from this file (mode 0600).",
        ),
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Take address, id and secret from the node's TOML file (explicit options win).",
        ),
        click.option(
            "--ca-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Use TLS, trusting this CA."
        ),
        click.option("--tls-domain", help="Name expected in the node's certificate."),
        click.option(
            "--client-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Client cert (mTLS)."
        ),
        click.option(
            "--client-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Client key (mTLS)."
        ),
        click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="Seconds."),
        json_option,
    ]
    for decorator in reversed(decorators):
        wrapper = decorator(wrapper)
    return wrapper


def _servers(text: str) -> list[int]:
    return [parse_enum(part, _RESOURCE_TYPES, "resource type") for part in text.split(",") if part.strip()]


def _resource_name(resource_type: int) -> str:
    return common_pb2.ResourceType.Name(resource_type)  # type: ignore[arg-type]


def _realm_rows(realms: list[RealmInfo]) -> list[list[object]]:
    return [
        [
            r.realm_id,
            r.name,
            "yes" if r.enabled else "no",
            r.status,
            r.version,
            ",".join(_resource_name(s) for s in r.use_servers) or "-",
            when(r.expires_at) if r.expires_at else "never",
        ]
        for r in realms
    ]


_REALM_HEADERS = ("ID", "NAME", "ENABLED", "STATUS", "VERSION", "SERVERS", "EXPIRES")


def _show_realm(realm: RealmInfo, as_json: bool) -> None:
    if as_json:
        echo_json(message_dict(realm.message))
    else:
        click.echo(table(_REALM_HEADERS, _realm_rows([realm])))


@click.group("realm")
def realm_group() -> None:
    """Realms stored on one node."""


@realm_group.command("create")
@click.argument("realm_id", type=click.IntRange(0, 2**32 - 1))
@click.option("--name", required=True, help="Realm name.")
@click.option("--disabled", is_flag=True, help="Create it disabled.")
@click.option("--use-servers", default="", help="Comma-separated resource types, e.g. TURN,STUN.")
@click.option(
    "--version",
    "realm_version",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Realm version (the supervisor's catalog assigns these; 0 leaves realm_sync_version alone).",
)
@click.option("--expires-at", type=click.IntRange(min=0), default=0, help="Unix seconds (0 = never).")
@node_options
def realm_create(
    target: NodeTarget,
    realm_id: int,
    name: str,
    disabled: bool,
    use_servers: str,
    realm_version: int,
    expires_at: int,
    as_json: bool,
) -> None:
    """Create realm REALM_ID on the node."""
    servers = _servers(use_servers)
    realm = run(
        _one(
            target,
            lambda node: node.create_realm(
                realm_id,
                name,
                enabled=not disabled,
                use_servers=servers,
                version=realm_version,
                expires_at=expires_at,
            ),
        )
    )
    _show_realm(realm, as_json)


@realm_group.command("get")
@click.argument("realm_id", type=click.IntRange(0, 2**32 - 1))
@node_options
def realm_get(target: NodeTarget, realm_id: int, as_json: bool) -> None:
    """Show realm REALM_ID."""
    _show_realm(run(_one(target, lambda node: node.get_realm(realm_id))), as_json)


@realm_group.command("update")
@click.argument("realm_id", type=click.IntRange(0, 2**32 - 1))
@click.option("--name", help="New name.")
@click.option("--enable/--disable", "enabled", default=None, help="Enable or disable it.")
@node_options
def realm_update(target: NodeTarget, realm_id: int, name: str | None, enabled: bool | None, as_json: bool) -> None:
    """Change the name and/or enabled flag of realm REALM_ID."""
    _show_realm(run(_one(target, lambda node: node.update_realm(realm_id, name=name, enabled=enabled))), as_json)


@realm_group.command("delete")
@click.argument("realm_id", type=click.IntRange(0, 2**32 - 1))
@node_options
def realm_delete(target: NodeTarget, realm_id: int, as_json: bool) -> None:
    """Delete realm REALM_ID."""
    run(_one(target, lambda node: node.delete_realm(realm_id)))
    if as_json:
        echo_json({"deleted": realm_id})
    else:
        click.echo(f"realm {realm_id} deleted from {target.label}")


@realm_group.command("list")
@click.option("--page-size", type=click.IntRange(1, 10_000), default=500, show_default=True, help="Realms per call.")
@node_options
def realm_list(target: NodeTarget, page_size: int, as_json: bool) -> None:
    """List every realm on the node (all pages)."""

    async def fetch() -> tuple[list[RealmInfo], int]:
        realms: list[RealmInfo] = []
        token: str | None = None
        async with target.session() as node:
            while True:
                page = await node.list_realms(page_size=page_size, page_token=token)
                realms.extend(page.realms)
                token = page.next_page_token
                if not token:
                    return realms, page.total_count

    realms, total = run(fetch())
    if as_json:
        echo_json({"realms": [message_dict(r.message) for r in realms], "total_count": total})
    elif realms:
        click.echo(table(_REALM_HEADERS, _realm_rows(realms)))
    else:
        click.echo(f"no realms on {target.label}")


async def _one(target: NodeTarget, call: Callable[[SupervisedClient], Awaitable[T]]) -> T:
    async with target.session() as node:
        return await call(node)


def _config_type(value: str) -> int:
    return parse_enum(value, _CONFIG_TYPES, "config type")


def _config_name(config_type: int) -> str:
    return common_pb2.ConfigType.Name(config_type)  # type: ignore[arg-type]


@click.group("config")
def config_group() -> None:
    """Configuration values of one node (CONFIG_TYPE by name or number, e.g. LOG_LEVEL or 3)."""


@config_group.command("get")
@click.argument("config_type")
@click.argument("key")
@node_options
def config_get(target: NodeTarget, config_type: str, key: str, as_json: bool) -> None:
    """Print the value of CONFIG_TYPE KEY."""
    ctype = _config_type(config_type)
    stored = run(_one(target, lambda node: node.get_config(ctype, key)))
    if as_json:
        echo_json({"config_type": _config_name(ctype), "key": key, "value": stored.value})
    else:
        click.echo(stored.value)


@config_group.command("set")
@click.argument("config_type")
@click.argument("key")
@click.argument("value")
@click.option("--no-apply", is_flag=True, help="Store only; do not apply it to the running node now.")
@node_options
def config_set(target: NodeTarget, config_type: str, key: str, value: str, no_apply: bool, as_json: bool) -> None:
    """Set CONFIG_TYPE KEY to VALUE (applied immediately unless --no-apply)."""
    ctype = _config_type(config_type)

    async def set_and_read() -> tuple[str | None, str]:
        async with target.session() as node:
            update = await node.update_config(ctype, key, value, apply_immediately=not no_apply)
            # Echo what the node stored (it normalises values: "WARNING" is stored as "warning").
            stored = await node.get_config(ctype, key)
            return update.old_value, stored.value

    old, stored = run(set_and_read())
    name = _config_name(ctype)
    if as_json:
        echo_json({"config_type": name, "key": key, "value": stored, "old_value": old, "applied": not no_apply})
    else:
        click.echo(
            f"{name} {key}: {old if old is not None else '(unset)'} -> {stored}{'' if no_apply else ' (applied)'}"
        )


@click.group("node")
def node_group() -> None:
    """One node's information and shutdown."""


@node_group.command("info")
@node_options
def node_info(target: NodeTarget, as_json: bool) -> None:
    """Show the node's identity, uptime, metrics and services."""
    info = run(_one(target, lambda node: node.node_info()))
    if as_json:
        echo_json(message_dict(info.message))
        return
    rows: list[list[object]] = [
        ["node_id", info.node_id],
        ["name", info.name],
        ["version", info.version],
        ["location_tag", info.location_tag],
        ["uptime", f"{info.uptime_secs}s"],
    ]
    if info.metrics is not None:
        m = info.metrics
        rows += [
            ["cpu", f"{m.cpu_usage_percent:.1f}%"],
            ["memory", f"{m.memory_usage_percent:.1f}% of {m.memory_total_bytes // 2**20} MiB"],
            ["load (1m)", f"{m.load_average_1m:.2f}"],
        ]
    click.echo(table(("FIELD", "VALUE"), rows))
    if info.services:
        click.echo()
        services = [
            [s.name, _resource_name(s.type), "yes" if s.is_healthy else "no", s.active_connections]
            for s in info.services
        ]
        click.echo(table(("SERVICE", "TYPE", "HEALTHY", "CONNECTIONS"), services))


@node_group.command("shutdown")
@click.option("--immediate", is_flag=True, help="Stop now instead of gracefully.")
@click.option("--grace", "grace_secs", type=click.IntRange(min=0), help="Seconds to finish in-flight work.")
@click.option("--reason", help="Why (logged by the node).")
@node_options
def node_shutdown(
    target: NodeTarget, immediate: bool, grace_secs: int | None, reason: str | None, as_json: bool
) -> None:
    """Ask the node to shut down (gracefully unless --immediate)."""
    ack = run(_one(target, lambda node: node.shutdown(graceful=not immediate, timeout_secs=grace_secs, reason=reason)))
    eta = ack.estimated_shutdown_time
    if as_json:
        echo_json({"accepted": True, "estimated_shutdown_time": eta})
    else:
        click.echo(f"{target.label} accepted the shutdown; expected down at {when(eta)}")
