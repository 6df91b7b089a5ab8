"""Test helpers for code built on supervit: a real in-process supervisor double and a fake clock.

``SupervisorDouble`` is a scriptable ``supervisor.v1.SupervisorService`` on a loopback grpc.aio
server (port 0) that verifies every credential like the reference supervisor, records every call,
and can be told to steer intervals, queue directives, fail calls, forget nodes, skew its clock or
go down and come back on the same port. ``FakeClock`` drives time windows deterministically::

    from supervit.testing import SupervisorDouble

    async with SupervisorDouble(secret) as double:
        config = SupervitConfig(node_id="n1", endpoint=double.endpoint, shared_secret=secret_hex, ...)
        async with SupervitClient(config, ServiceCollector()) as client:
            await client.register_node()
        assert double.calls("RegisterNode")[0].ok

See docs/testing.md.
"""

from supervit.testing._clock import FakeClock
from supervit.testing._supervisor_double import Received, SupervisorDouble

__all__ = ["FakeClock", "Received", "SupervisorDouble"]
