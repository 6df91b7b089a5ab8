"""``supervit ctl``: operate nodes (their SupervisedService) and the supervisor (its admin service).

Node side (``--node HOST:PORT --node-id ID --shared-secret HEX`` or ``--config node.toml``)::

    supervit ctl realm create|get|update|delete|list
    supervit ctl config get|set
    supervit ctl node info|shutdown

Supervisor side (``--admin HOST:PORT --admin-secret HEX`` or ``--config supervisor.toml``)::

    supervit ctl nodes
    supervit ctl directive NODE TYPE [PAYLOAD]
    supervit ctl catalog list
    supervit ctl catalog realm add|update|remove

Output is a table by default and JSON with ``--json``. Failures (unreachable, refused credential,
``success=false``) are one line on stderr and exit status 1; usage errors exit 2.
"""

from __future__ import annotations

import click

from supervit.cli._ctl_admin import catalog_group, directive, nodes
from supervit.cli._ctl_node import config_group, node_group, realm_group

__all__ = ["ctl"]


@click.group("ctl")
def ctl() -> None:
    """Operate nodes (realm, config, node) and the supervisor (nodes, directive, catalog)."""


for _command in (realm_group, config_group, node_group, nodes, directive, catalog_group):
    ctl.add_command(_command)
