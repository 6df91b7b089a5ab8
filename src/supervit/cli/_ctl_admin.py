"""``supervit ctl nodes|directive|catalog``: the supervisor's SupervisorAdmin service.

The admin service is given by ``--admin HOST:PORT --admin-secret HEX`` (environment:
``SUPERVIT_ADMIN_ADDR``, ``SUPERVIT_ADMIN_SECRET``) or by the supervisor's TOML file with
``--config supervisor.toml`` (its ``[admin] listen`` and ``secret``, which the usual
``SUPERVIT_ADMIN__LISTEN`` / ``SUPERVIT_ADMIN__SECRET`` variables override).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from supervit._exceptions import ConfigError, RpcError
from supervit.auth import SharedSecret
from supervit.cli._ctl_common import (
    ADDRESS_FORMS,
    age,
    echo_json,
    failure,
    json_option,
    message_dict,
    parse_enum,
    parse_target,
    pick_secret,
    run,
    table,
)
from supervit.config import apply_env, build, read_secret_file, read_toml
from supervit.protocol import common_pb2, supervisor_pb2
from supervit.supervisor import (
    AdminClient,
    AdminSection,
    CatalogChange,
    CatalogRealmInfo,
    NodeListing,
    NodeSummary,
    split_host_port,
)

__all__ = ["catalog_group", "directive", "nodes", "sync_text"]

T = TypeVar("T")
_DIRECTIVES = {k: int(v) for k, v in supervisor_pb2.DirectiveType.items() if v}
_RESOURCE_TYPES = {k: int(v) for k, v in common_pb2.ResourceType.items() if v}
_DEFAULT_ADMIN = "127.0.0.1:50052"


def _from_config(path: Path, need_address: bool) -> tuple[str | None, str | None]:
    """The ``[admin]`` address and secret of the supervisor's TOML file, with the environment
    overrides and ``secret_file`` the supervisor itself would apply (only that table is read)."""
    raw = apply_env(read_toml(path), tables={"admin"})
    admin = build(AdminSection, raw.get("admin", {}), "admin")
    secret = admin.secret
    if admin.secret_file is not None:
        if secret is not None:
            raise ConfigError("admin.secret_file", "set either secret or secret_file, not both")
        secret = read_secret_file(admin.secret_file, "admin.secret_file")
    address: str | None = None
    if need_address:
        if not admin.listen:
            raise click.UsageError(f"{path} has no [admin] listen address: give it with --admin")
        try:
            _, port = split_host_port(admin.listen)
        except ValueError as exc:
            raise ConfigError("admin.listen", str(exc)) from None
        if port == 0:
            raise click.UsageError(f"{path} has admin port 0 (any free port): give the actual address with --admin")
        address = admin.listen
    return address, secret


class _Admin:
    """An AdminClient plus what error lines need to name."""

    def __init__(self, address: str, secret: SharedSecret, timeout: float) -> None:
        self.address = address
        self.secret = secret
        self.timeout = timeout

    def run(self, call: Callable[[AdminClient], Coroutine[Any, Any, T]]) -> T:
        async def go() -> T:
            async with AdminClient(self.address, self.secret, timeout_secs=self.timeout) as client:
                try:
                    return await call(client)
                except RpcError as exc:
                    raise failure(
                        exc, f"supervisor admin at {self.address}", "check --admin-secret", self.timeout
                    ) from None

        return run(go())


def admin_options(f: Callable[..., None]) -> Callable[..., None]:
    """Add the admin connection options; the command receives ``admin: _Admin`` instead."""

    @functools.wraps(f)
    def wrapper(
        *args: Any,
        admin_addr: str | None,
        admin_secret: str | None,
        admin_secret_file: Path | None,
        config_path: Path | None,
        timeout: float,
        **kwargs: Any,
    ) -> None:
        secret_text = pick_secret(admin_secret, admin_secret_file, "--admin-secret", "--admin-secret-file")
        if config_path is not None:
            addr, config_secret = _from_config(config_path, need_address=admin_addr is None)
            admin_addr, secret_text = admin_addr or addr, secret_text or config_secret
        if not secret_text:
            raise click.UsageError(
                "missing --admin-secret or --admin-secret-file (or SUPERVIT_ADMIN__SECRET, SUPERVIT_ADMIN__SECRET_FILE,"
                " or --config supervisor.toml)"
            )
        target = parse_target(admin_addr or _DEFAULT_ADMIN, "--admin")
        if target.tls:
            raise click.BadParameter(
                "the admin service speaks plaintext (loopback): use http:// or host:port", param_hint="--admin"
            )
        secret = SharedSecret.from_hex(secret_text, field="--admin-secret")
        f(*args, admin=_Admin(target.address, secret, timeout), **kwargs)

    decorators = [
        click.option(
            "--admin",
            "admin_addr",
            envvar=["SUPERVIT_ADMIN__LISTEN", "SUPERVIT_ADMIN_ADDR"],
            show_envvar=True,
            help=f"The supervisor's admin address: {ADDRESS_FORMS} [default: {_DEFAULT_ADMIN}].",
        ),
        click.option(
            "--admin-secret",
            envvar=["SUPERVIT_ADMIN__SECRET", "SUPERVIT_ADMIN_SECRET"],
            show_envvar=True,
            help="The admin hex secret. Prefer the env var or a file: command lines are visible to other users.",
        ),
        click.option(
            "--admin-secret-file",
            envvar="SUPERVIT_ADMIN__SECRET_FILE",
            show_envvar=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="Read the admin hex secret from this file (mode 0600).",
        ),
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Take the admin address and secret from the supervisor's TOML file (explicit options win).",
        ),
        click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="Seconds."),
        json_option,
    ]
    for decorator in reversed(decorators):
        wrapper = decorator(wrapper)
    return wrapper


def sync_text(node: NodeSummary) -> str:
    """``v3 in sync`` / ``v1, 2 behind`` (+ ``push failing``) for one node."""
    text = f"v{node.realm_sync_version} " + ("in sync" if node.sync_lag == 0 else f"{node.sync_lag} behind")
    if node.last_push_error is not None:
        text += ", push failing"
    return text


def node_rows(listing: NodeListing, now: float | None = None) -> list[list[object]]:
    """Table rows for ``ctl nodes`` (also used by ``supervit demo``)."""
    now = listing.server_timestamp if now is None else now
    rows: list[list[object]] = []
    for n in listing.nodes:
        last = f"{age(now - n.last_report_at)} ago" if n.last_report_at is not None else "never"
        power = str(n.power_reserve_level) if n.power_reserve_level is not None else "-"
        rows.append([n.node_id, n.name, n.state, last, power, sync_text(n), n.agent_addr])
    return rows


NODE_HEADERS = ("NODE", "NAME", "STATE", "LAST REPORT", "POWER", "REALM SYNC", "ADDRESS")


@click.command("nodes")
@admin_options
def nodes(admin: _Admin, as_json: bool) -> None:
    """List the nodes the supervisor knows: state, last report age, power level, realm sync.

    Follows the admin API's pages, so any number of nodes is listed.
    """
    listing = admin.run(lambda c: c.list_nodes())
    if as_json:
        echo_json(message_dict(listing.message))
    elif listing.nodes:
        click.echo(table(NODE_HEADERS, node_rows(listing, time.time())))
        click.echo(f"catalog version {listing.catalog_version}")
    else:
        click.echo("no nodes registered yet")


@click.command("directive")
@click.argument("node_id")
@click.argument("directive_type")
@click.argument("payload", required=False)
@admin_options
def directive(admin: _Admin, node_id: str, directive_type: str, payload: str | None, as_json: bool) -> None:
    """Queue a directive for NODE_ID; it is delivered at the node's next report.

    DIRECTIVE_TYPE: ADJUST_INTERVAL (PAYLOAD = seconds), REQUEST_FULL_REPORT or GRACEFUL_SHUTDOWN
    (PAYLOAD = reason); case-insensitive, "-" works for "_".
    """
    kind = parse_enum(directive_type, _DIRECTIVES, "directive type")
    queued = admin.run(lambda c: c.enqueue_directive(node_id, kind, payload))
    if as_json:
        echo_json(message_dict(queued.message))
    else:
        name = supervisor_pb2.DirectiveType.Name(kind)  # type: ignore[arg-type]
        click.echo(
            f"queued {name} #{queued.directive_id} for {node_id} (position {queued.position});"
            f" delivered at {node_id}'s next report"
        )


def _servers(text: str | None) -> list[int] | None:
    if text is None:
        return None
    return [parse_enum(part, _RESOURCE_TYPES, "resource type") for part in text.split(",") if part.strip()]


def _realm_line(realm: CatalogRealmInfo) -> list[object]:
    servers = ",".join(common_pb2.ResourceType.Name(s) for s in realm.use_servers) or "-"  # type: ignore[arg-type]
    return [
        realm.realm_id,
        realm.name,
        "yes" if realm.enabled else "no",
        realm.version,
        servers,
        realm.expires_at or "never",
    ]


_CATALOG_HEADERS = ("ID", "NAME", "ENABLED", "VERSION", "SERVERS", "EXPIRES")


@click.group("catalog")
def catalog_group() -> None:
    """The supervisor's realm catalog (changes are pushed to the nodes)."""


@catalog_group.command("list")
@admin_options
def catalog_list(admin: _Admin, as_json: bool) -> None:
    """List the catalog's realms."""
    listing = admin.run(lambda c: c.list_catalog())
    if as_json:
        echo_json(message_dict(listing.message))
        return
    if listing.realms:
        click.echo(table(_CATALOG_HEADERS, [_realm_line(r) for r in listing.realms]))
    click.echo(f"catalog version {listing.catalog_version}, {len(listing.realms)} realm(s)")


@catalog_group.group("realm")
def catalog_realm() -> None:
    """Add, update or remove one catalog realm."""


def _show_put(response: CatalogChange, verb: str, as_json: bool) -> None:
    if as_json:
        echo_json(message_dict(response.message))
    else:
        click.echo(table(_CATALOG_HEADERS, [_realm_line(response.realm)]))
        click.echo(
            f"realm {response.realm.realm_id} {verb}: catalog version {response.catalog_version}, pushing to nodes"
        )


@catalog_realm.command("add")
@click.argument("realm_id", type=click.IntRange(0, 2**32 - 1))
@click.option("--name", required=True, help="Realm name.")
@click.option("--disabled", is_flag=True, help="Add it disabled.")
@click.option("--use-servers", help="Comma-separated resource types, e.g. TURN,STUN.")
@click.option("--expires-at", type=click.IntRange(min=0), default=0, help="Unix seconds (0 = never).")
@admin_options
def catalog_add(
    admin: _Admin, realm_id: int, name: str, disabled: bool, use_servers: str | None, expires_at: int, as_json: bool
) -> None:
    """Add REALM_ID to the catalog (every node gets it)."""
    servers = _servers(use_servers) or []
    response = admin.run(
        lambda c: c.add_realm(realm_id, name, enabled=not disabled, use_servers=servers, expires_at=expires_at)
    )
    _show_put(response, "added", as_json)


@catalog_realm.command("update")
@click.argument("realm_id", type=click.IntRange(0, 2**32 - 1))
@click.option("--name", help="New name.")
@click.option("--enable/--disable", "enabled", default=None, help="Enable or disable it.")
@click.option("--use-servers", help='Replace the resource types ("" for none).')
@click.option("--expires-at", type=click.IntRange(min=0), help="Unix seconds (0 = never).")
@admin_options
def catalog_update(
    admin: _Admin,
    realm_id: int,
    name: str | None,
    enabled: bool | None,
    use_servers: str | None,
    expires_at: int | None,
    as_json: bool,
) -> None:
    """Change REALM_ID in the catalog (nodes get the new version)."""
    servers = _servers(use_servers)
    response = admin.run(
        lambda c: c.update_realm(realm_id, name=name, enabled=enabled, use_servers=servers, expires_at=expires_at)
    )
    _show_put(response, "updated", as_json)


@catalog_realm.command("remove")
@click.argument("realm_id", type=click.IntRange(0, 2**32 - 1))
@admin_options
def catalog_remove(admin: _Admin, realm_id: int, as_json: bool) -> None:
    """Remove REALM_ID from the catalog (nodes delete it)."""
    response = admin.run(lambda c: c.remove_realm(realm_id))
    if as_json:
        echo_json(message_dict(response.message))
    else:
        click.echo(f"realm {realm_id} removed: catalog version {response.catalog_version}, pushing to nodes")
