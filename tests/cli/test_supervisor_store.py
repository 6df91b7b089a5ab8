"""`supervit supervisor migrate / export / import`: SQLite state moved into PostgreSQL.

The export runs as a real subprocess; the other commands through ``main()`` in process (the same
parsing, output and exit codes; tests/cli/_inprocess.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from supervit.protocol import supervisor_pb2
from supervit.supervisor import PG_MIGRATIONS, Supervisor, load_supervisor_config
from tests.cli.test_ctl import clean_env, supervit, supervit_subprocess
from tests.conftest import SECRET_HEX
from tests.stores import SharedStores
from tests.supervisor.conftest import NodeSim


def write_config(path: Path, data_dir: Path, server: dict[str, Any] | None = None) -> Path:
    lines = ["[server]", 'listen = "127.0.0.1:0"', f'data_dir = "{data_dir}"', "shutdown_grace_secs = 0"]
    for key, value in (server or {}).items():
        lines.append(f"{key} = {value!r}".replace("'", '"'))
    lines += ["[fleet]", f'shared_secret = "{SECRET_HEX}"', "report_interval_secs = 5"]
    lines += ["[admin]", 'listen = ""', "[metrics]", 'listen = ""']
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_export_from_sqlite_import_into_postgres(tmp_path: Path, stores: SharedStores) -> None:
    sqlite_toml = write_config(tmp_path / "sqlite.toml", tmp_path / "sup")
    pg_toml = write_config(tmp_path / "pg.toml", tmp_path / "unused", stores.server_table())

    # An embedded supervisor with two nodes, a realm and a queued directive.
    sup = Supervisor(load_supervisor_config(sqlite_toml))
    await sup.start()
    try:
        channel = grpc.aio.insecure_channel(sup.address or "")
        for node_id in ("n1", "n2"):
            node = NodeSim(channel, node_id)
            await node.register()
            await node.report(power=4)
        await sup.catalog.add(5, "five")
        await sup.catalog.add(6, "six")
        await sup.catalog.remove(6)
        await sup.directives.enqueue("n2", supervisor_pb2.ADJUST_INTERVAL, "9")
        await channel.close(None)
    finally:
        await sup.stop(0)

    env = clean_env()
    out = tmp_path / "fleet.json"
    result = await supervit_subprocess("supervisor", "export", "--config", str(sqlite_toml), "--out", str(out), env=env)
    assert result.code == 0, result.err
    assert "exported 2 node(s), 2 catalog entr(y/ies), 1 directive(s)" in result.out

    result = await supervit("supervisor", "migrate", "--config", str(pg_toml), "--check", env=env)
    latest = PG_MIGRATIONS[-1].version
    every = ", ".join(f"v{m.version}" for m in PG_MIGRATIONS)
    assert result.code == 1 and f"not applied: {every}" in result.out, result
    result = await supervit("supervisor", "migrate", "--config", str(pg_toml), env=env)
    assert result.code == 0 and f"migrated from v0 to v{latest}" in result.out, result
    result = await supervit("supervisor", "migrate", "--config", str(pg_toml), "--check", env=env)
    assert result.code == 0 and f"schema is current (v{latest})" in result.out, result
    result = await supervit("supervisor", "migrate", "--config", str(sqlite_toml), "--check", env=env)
    assert result.code == 0 and "schema is current" in result.out, result

    result = await supervit("supervisor", "import", "--config", str(pg_toml), "--from", str(out), env=env)
    assert result.code == 0 and "imported 2 node(s)" in result.out, result
    result = await supervit("supervisor", "import", "--config", str(pg_toml), "--from", str(out), env=env)
    assert result.code == 1 and "already holds a fleet" in result.err, result
    result = await supervit("supervisor", "import", "--config", str(sqlite_toml), "--from", str(out), env=env)
    assert result.code == 2 and "server.database_url" in result.err, result

    replica = Supervisor(load_supervisor_config(pg_toml))
    await replica.start()
    try:
        nodes = {n.node_id: n for n in await replica.registry.nodes()}
        assert sorted(nodes) == ["n1", "n2"] and nodes["n1"].reports == 1 and nodes["n1"].power_reserve_level == 4
        assert nodes["n2"].pending_directives == 1 and nodes["n1"].registration.location == "rack 4"
        assert replica.catalog.version == 3 and [r.realm_id for r in await replica.catalog.realms()] == [5]
        channel = grpc.aio.insecure_channel(replica.address or "")
        response = await NodeSim(channel, "n2").report()  # no re-registration: the registry moved
        assert response.directive.type == supervisor_pb2.ADJUST_INTERVAL and response.next_report_interval_secs == 9
        directive, _ = await replica.directives.enqueue("n1", supervisor_pb2.REQUEST_FULL_REPORT)
        assert directive.directive_id > 1  # continues after the imported ids
        await channel.close(None)
    finally:
        await replica.stop(0)
