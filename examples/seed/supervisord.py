"""The original's ``examples/supervisord.rs`` (actrix's crates/supervit), in Python: a standalone
Supervisord gRPC server, authenticated, to try with ``supervit ctl`` or grpcurl.

    python examples/seed/supervisord.py                 # SUPERVISORD_BIND overrides 127.0.0.1:50055
    supervit ctl node info --node 127.0.0.1:50055 --node-id example-node-01 \\
        --shared-secret 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef

Nonces are kept in ``<temp dir>/supervit_example`` as in the original; realms and config values in
Supervisord's default data directory (``./supervit-data``): the original sets its database path
globally with ``set_db_path``, Python takes ``data_dir=`` on Supervisord instead. Stop it with Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import tempfile
from pathlib import Path

import grpc

from supervit import AuthService, ServiceCollector, SqliteNonceStorage, Supervisord, add_supervised_service
from supervit import __version__ as version

log = logging.getLogger("supervisord-example")

# Shared secret for testing (hex encoded, 32 bytes)
TEST_SHARED_SECRET = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"


async def main() -> None:
    # Initialize logging
    logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # Create temporary directory for storage
    temp_dir = Path(tempfile.gettempdir()) / "supervit_example"
    temp_dir.mkdir(parents=True, exist_ok=True)
    log.info("Using temp directory: %s", temp_dir)

    # Create nonce storage
    nonce_storage = await SqliteNonceStorage.open(temp_dir)
    log.info("Nonce storage initialized")

    # Create empty service collector for demo
    service_collector = ServiceCollector()

    # Create supervisord service (default SQLite stores in ./supervit-data)
    service = Supervisord(
        "example-node-01",
        "Example Node",
        "local,dev,example",
        version,
        service_collector,
    )
    await service.open()
    log.info("Main database initialized")

    # Allow overriding bind address for sandboxed environments (default: 127.0.0.1:50055)
    bind = os.environ.get("SUPERVISORD_BIND", "127.0.0.1:50055")

    authed_service = AuthService(
        service,
        "example-node-01",
        bytes.fromhex(TEST_SHARED_SECRET),
        nonce_storage,
        300,
    )

    server = grpc.aio.server()
    add_supervised_service(server, authed_service)
    port = server.add_insecure_port(bind)
    await server.start()
    addr = f"{bind.rsplit(':', 1)[0]}:{port}"
    log.info("Supervisord gRPC server listening on %s", addr)
    log.info("Test with: supervit ctl node info --node %s --node-id example-node-01 --shared-secret ...", addr)
    log.info("Shared secret (for testing): %s", TEST_SHARED_SECRET)

    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)
    await service.close()
    await nonce_storage.close()


if __name__ == "__main__":
    asyncio.run(main())
