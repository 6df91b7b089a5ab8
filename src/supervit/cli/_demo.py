"""``supervit demo``: a supervisor and two nodes on loopback, as real processes, with a live table.

Everything is generated: a temporary work directory (configs, data dirs, logs), a fleet secret,
an admin secret and free ports (port 0, read back from each process's "listening on" line). The
demo shows the nodes register and report, adds a realm to the catalog and shows it arrive on
both nodes, then keeps a live table until ``--duration`` elapses or Ctrl-C, and stops everything
(nodes first, each with SIGTERM). Exit status 0 when every step worked; otherwise one line saying
which step failed, the last log lines of the process concerned, and status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import click

from supervit._exceptions import RpcError
from supervit.auth import SharedSecret
from supervit.cli._ctl_admin import NODE_HEADERS, node_rows
from supervit.cli._ctl_common import CtlError, table
from supervit.client import SupervisedClient
from supervit.protocol import common_pb2
from supervit.supervisor import AdminClient, NodeListing

__all__ = ["demo"]

_NODES = ("demo-1", "demo-2")
_REALM_ID = 1
_REALM_NAME = "demo-realm"
_STARTUP_SECS = 20.0
_STEP_SECS = 30.0
_STOP_SECS = 10.0


class DemoError(CtlError):
    """A demo step failed (the message says which)."""


class _Interrupted(Exception):
    """Ctrl-C (or SIGTERM) arrived before the setup steps were done."""


@dataclass
class _Proc:
    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    log: IO[bytes]
    address: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def tail(self, lines: int = 8) -> str:
        self.log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(f"    {line}" for line in text)


def _cli_prefix() -> str:
    """How to run this supervit from a shell: ``supervit`` if that is this one, else its path."""
    script = Path(sys.executable).parent / "supervit"
    if not script.exists():
        return f"{shlex.quote(sys.executable)} -m supervit"
    on_path = shutil.which("supervit")
    return "supervit" if on_path and Path(on_path).resolve() == script.resolve() else shlex.quote(str(script))


def _secret_file(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    return path


class _Demo:
    def __init__(self, duration: float, interval: int, workdir: Path, keep: bool = False) -> None:
        self.duration = 0.0 if keep else duration
        self.interval = interval
        self.workdir = workdir
        self.keep = keep
        self.fleet_hex = secrets.token_hex(32)
        self.admin_hex = secrets.token_hex(32)
        self.procs: list[_Proc] = []
        self.started = time.monotonic()
        self.stop = asyncio.Event()
        self.live_lines = 0
        self.tty = sys.stdout.isatty()

    # -- output ---------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.live_lines = 0  # the live table is not redrawn over an event line
        click.echo(f"[{time.monotonic() - self.started:5.1f}s] {text}")

    def show_table(self, listing: NodeListing) -> None:
        elapsed = f"[{time.monotonic() - self.started:5.1f}s] catalog version {listing.catalog_version}"
        text = elapsed + "\n" + table(NODE_HEADERS, node_rows(listing, time.time()))
        lines = text.splitlines()
        if self.tty and self.live_lines:
            click.echo(f"\x1b[{self.live_lines}F\x1b[J", nl=False)  # redraw in place
        elif not self.tty:
            click.echo()
        click.echo(text)
        self.live_lines = len(lines)

    # -- processes ------------------------------------------------------------------------------

    async def spawn(self, name: str, args: list[str], prefix: str, extra: dict[str, str] | None = None) -> _Proc:
        log_path = self.workdir / f"{name}.log"
        log = log_path.open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVIT_")}
        env["PYTHONUNBUFFERED"] = "1"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "supervit",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=env,
            # Own session: Ctrl-C reaches only the demo, which then stops everything in order.
            start_new_session=True,
        )
        proc = _Proc(name, process, log_path, log)
        self.procs.append(proc)
        wanted = {prefix: "address", **(extra or {})}
        assert process.stdout is not None
        try:
            async with asyncio.timeout(_STARTUP_SECS):
                while wanted:
                    raw = await process.stdout.readline()
                    if not raw:
                        code = await process.wait()
                        raise DemoError(f"{name} exited with status {code} before serving:\n{proc.tail()}")
                    line = raw.decode(errors="replace").strip()
                    for start, key in list(wanted.items()):
                        if line.startswith(start):
                            value = line[len(start) :]
                            if key == "address":
                                proc.address = value
                            else:
                                proc.extra[key] = value
                            del wanted[start]
        except TimeoutError:
            raise DemoError(f"{name} did not start serving within {_STARTUP_SECS:.0f}s:\n{proc.tail()}") from None
        return proc

    def check_alive(self) -> None:
        for proc in self.procs:
            code = proc.process.returncode
            if code is not None:
                raise DemoError(f"{proc.name} exited unexpectedly with status {code}:\n{proc.tail()}")

    async def stop_all(self) -> list[str]:
        """SIGTERM the nodes, then the supervisor; returns problems (non-zero exits, kills)."""
        problems: list[str] = []
        for group in (self.procs[1:], self.procs[:1]):
            for proc in group:
                if proc.process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.process.send_signal(signal.SIGTERM)
            for proc in group:
                try:
                    code = await asyncio.wait_for(proc.process.wait(), _STOP_SECS)
                except TimeoutError:
                    proc.process.kill()
                    await proc.process.wait()
                    problems.append(f"{proc.name} did not stop within {_STOP_SECS:.0f}s and was killed")
                    continue
                if code != 0:
                    problems.append(f"{proc.name} exited with status {code}:\n{proc.tail()}")
        for proc in self.procs:
            proc.log.close()
        return problems

    # -- the steps ------------------------------------------------------------------------------

    def write_supervisor_config(self) -> Path:
        path = self.workdir / "supervisor.toml"
        path.write_text(
            f"""[server]
listen = "127.0.0.1:0"
data_dir = "{self.workdir / "supervisor"}"
shutdown_grace_secs = 2

[fleet]
shared_secret = "{self.fleet_hex}"
report_interval_secs = {self.interval}
heartbeat_interval_secs = {self.interval * 2}

[admin]
listen = "127.0.0.1:0"
secret = "{self.admin_hex}"

[push]
timeout_secs = 5
backoff_base_secs = 0.5
backoff_cap_secs = 5

[metrics]
listen = "127.0.0.1:0"
"""
        )
        return path

    def write_node_config(self, node_id: str, index: int, endpoint: str) -> Path:
        path = self.workdir / f"{node_id}.toml"
        path.write_text(
            f"""[supervisor]
status_report_interval_secs = {self.interval}
health_check_interval_secs = {self.interval * 2}
min_report_interval_secs = 1

[supervisor.metrics]
listen = "127.0.0.1:0"

[supervisor.client]
node_id = "{node_id}"
shared_secret = "{self.fleet_hex}"
endpoint = "{endpoint}"

[supervisor.supervisord]
node_name = "Demo node {index}"
ip = "127.0.0.1"
port = 0
data_dir = "{self.workdir / node_id}"
location_tag = "demo-lab"
shutdown_grace_secs = 2

[[supervisor.supervisord.services]]
name = "turn-{index}"
type = "TURN"
port = {3478 + index}
"""
        )
        return path

    async def wait_for(self, admin: AdminClient, what: str, ready: Callable[[NodeListing], bool]) -> NodeListing:
        deadline = time.monotonic() + _STEP_SECS
        while True:
            self.check_alive()
            listing = await admin.list_nodes()
            if ready(listing):
                return listing
            if self.stop.is_set():
                raise _Interrupted()
            if time.monotonic() > deadline:
                self.show_table(listing)
                raise DemoError(f"{what} did not happen within {_STEP_SECS:.0f}s")
            await asyncio.sleep(0.25)

    async def realm_on(self, node: str, address: str) -> int | None:
        async with SupervisedClient(address, node, SharedSecret.from_hex(self.fleet_hex), timeout=5) as client:
            try:
                realm = await client.get_realm(_REALM_ID)
            except RpcError:  # not there yet, refused or unreachable: the caller asks again
                return None
        return realm.version

    def print_ctl_commands(self, sup: _Proc, nodes: dict[str, str]) -> None:
        """Paste-ready ``supervit ctl`` commands for the running processes (--keep)."""
        admin_file = _secret_file(self.workdir / "admin.secret", self.admin_hex)
        fleet_file = _secret_file(self.workdir / "fleet.secret", self.fleet_hex)
        cli = _cli_prefix()
        admin = sup.extra["admin"]
        first, address = next(iter(nodes.items()))
        lines = [
            "the processes keep running until Ctrl-C; explore them from another shell:",
            f"  export SUPERVIT_ADMIN__SECRET_FILE={shlex.quote(str(admin_file))}",
            f"  {cli} ctl nodes --admin {admin}",
            f"  {cli} ctl catalog list --admin {admin}",
            f"  {cli} ctl catalog realm add 2 --name second --use-servers STUN --admin {admin}",
            f"  {cli} ctl directive {first} adjust-interval 5 --admin {admin}",
            f"  export SUPERVIT_SUPERVISOR__CLIENT__SHARED_SECRET_FILE={shlex.quote(str(fleet_file))}",
        ]
        for node_id, node_address in nodes.items():
            lines.append(f"  {cli} ctl realm list --node {node_address} --node-id {node_id}")
        lines.append(f"  {cli} ctl node info --node {address} --node-id {first}")
        lines.append(f"configs, databases and logs: {self.workdir}")
        self.say("\n".join(lines))

    async def run(self) -> None:
        sup = await self.spawn(
            "supervisor",
            ["supervisor", "--config", str(self.write_supervisor_config())],
            "supervit supervisor listening on ",
            {
                "supervit supervisor admin listening on ": "admin",
                "supervit supervisor metrics listening on ": "metrics",
            },
        )
        self.say(
            f"supervisor up: SupervisorService on {sup.address}, admin on {sup.extra['admin']},"
            f" metrics on http://{sup.extra['metrics']}/metrics"
        )
        nodes: dict[str, str] = {}
        for index, node_id in enumerate(_NODES, start=1):
            config = self.write_node_config(node_id, index, f"http://{sup.address}")
            proc = await self.spawn(
                node_id,
                ["node", "--config", str(config)],
                "supervit node listening on ",
                {"supervit node metrics listening on ": "metrics"},
            )
            nodes[node_id] = proc.address
            self.say(
                f"node {node_id} up: SupervisedService on {proc.address},"
                f" metrics on http://{proc.extra['metrics']}/metrics"
            )

        async with AdminClient(sup.extra["admin"], SharedSecret.from_hex(self.admin_hex)) as admin:

            def reported(listing: NodeListing) -> bool:
                seen = {n.node_id for n in listing.nodes if n.last_report_at is not None and n.state == "online"}
                return seen >= set(_NODES)

            listing = await self.wait_for(admin, "registration and a first report of both nodes", reported)
            for n in listing.nodes:
                self.say(f"{n.node_id} registered and reporting (power reserve level {n.power_reserve_level})")
            added = await admin.add_realm(_REALM_ID, _REALM_NAME, use_servers=[common_pb2.TURN])
            self.say(f'catalog: added realm {_REALM_ID} "{_REALM_NAME}" (catalog version {added.catalog_version})')

            def synced(listing: NodeListing) -> bool:
                return sum(n.sync_lag == 0 and n.realm_sync_version >= added.realm.version for n in listing.nodes) == 2

            await self.wait_for(admin, f"realm {_REALM_ID} sync to both nodes", synced)
            for node_id, address in nodes.items():
                version = await self.realm_on(node_id, address)
                if version != added.realm.version:
                    raise DemoError(f"realm {_REALM_ID} is not on {node_id} (GetRealm said version {version})")
                self.say(f'realm {_REALM_ID} "{_REALM_NAME}" arrived on {node_id} (version {version})')

            if self.keep:
                self.print_ctl_commands(sup, nodes)
            until = "on Ctrl-C" if self.duration == 0 else f"{self.duration:g}s after start or on Ctrl-C"
            self.say(f"live view (refreshes every {self.interval}s; stops {until}):")
            while not self.stop.is_set():
                self.check_alive()
                self.show_table(await admin.list_nodes())
                remaining = self.interval if self.duration == 0 else self.started + self.duration - time.monotonic()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), min(self.interval, remaining))
            final = await admin.list_nodes()

        online = sum(n.state == "online" for n in final.nodes)
        # The demo's own realm: catalog changes made meanwhile with ``ctl`` (--keep) may still be on
        # their way to a node that reports every few seconds, and are not the demo's to judge.
        in_sync = sum(n.realm_sync_version >= added.realm.version for n in final.nodes)
        self.say(
            f"summary: {len(final.nodes)} nodes registered, {online} online, realm {_REALM_ID} synced on {in_sync}/2"
        )
        if online != 2 or in_sync != 2:
            raise DemoError("a node went offline or out of sync during the demo")


async def _main(duration: float, interval: int, keep: bool) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="supervit-demo-"))
    demo_run = _Demo(duration, interval, workdir, keep)
    click.echo(f"supervit demo: a supervisor and {len(_NODES)} nodes on 127.0.0.1, work dir {workdir}")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, demo_run.stop.set)
    failure: str | None = None
    interrupted = False
    try:
        await demo_run.run()
        if demo_run.stop.is_set():
            demo_run.say("interrupted: stopping")
    except _Interrupted:
        interrupted = True
        demo_run.say("interrupted before the demo was complete: stopping")
    except (DemoError, OSError) as exc:
        failure = str(exc)
    except CtlError as exc:
        failure = f"supervisor admin call failed: {exc}"
    finally:
        problems = await demo_run.stop_all()
    if failure is None and problems:
        failure = "; ".join(problems)
    if failure is None:
        demo_run.say("everything stopped cleanly")
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            click.echo(f"supervit demo: configs, databases and logs kept in {workdir}")
        return 130 if interrupted else 0
    click.echo(f"supervit demo: error: {failure}", err=True)
    click.echo(f"supervit demo: configs and logs kept in {workdir}", err=True)
    return 1


@click.command("demo")
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds to run (counted from the start; the setup steps always complete). 0 = until Ctrl-C.",
)
@click.option("--interval", type=click.IntRange(1, 60), default=2, show_default=True, help="Report interval (s).")
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the processes running until Ctrl-C (printing ctl commands to explore them) and the work directory.",
)
def demo(duration: float, interval: int, keep: bool) -> None:
    """Start a supervisor and two nodes on loopback and watch them work together.

    Shows registration and reports, adds a realm to the catalog, shows it arrive on both nodes,
    then a live table until --duration elapses or Ctrl-C. Exit status 0 on success.
    """
    code = asyncio.run(_main(duration, interval, keep))
    if code:
        sys.exit(code)
