"""The original's client example ("Usage → Client" in actrix's crates/supervit/README.md), in Python.

It runs as written against ``supervit supervisor``. The original's example secret is published,
so the supervisor refuses it unless told this is a throwaway test::

    supervit supervisor --config examples/seed/supervisor.toml --allow-example-secret &
    python examples/seed/client.py                  # or: python examples/seed/client.py http://host:port

Defaults as in the original: ``agent_addr`` 0.0.0.0:50055 (advertised as 127.0.0.1:50055, a
reachable address), ``name`` = ``node_id``, reports every 60 s, health checks every 30 s.
"""

from __future__ import annotations

import asyncio
import sys

from supervit import ServiceCollector, SupervitClient, SupervitConfig


async def main(endpoint: str = "http://localhost:50051") -> None:
    # Create configuration
    config = SupervitConfig(
        node_id="actrix-01",
        endpoint=endpoint,
        shared_secret="0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    )

    # Create service collector (required for client)
    service_collector = ServiceCollector()

    # Create and connect client
    client = SupervitClient(config, service_collector)
    await client.connect()

    # Start automatic status reporting
    await client.start_status_reporting()

    # Perform health check
    health = await client.health_check()
    print(f"Health check: {health.message}".replace("\n", " ").strip())

    # The Rust program returns here and drops the client. In Python, let the background task
    # finish its registration (its first report follows within the interval), then stop it.
    async with asyncio.timeout(config.connect_timeout_secs):
        while not client.registered:  # noqa: ASYNC110 - the client offers no event for this
            await asyncio.sleep(0.1)
    print(f"registered as {config.node_id} (agent address {config.advertised_agent_addr})")
    await client.stop()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))
