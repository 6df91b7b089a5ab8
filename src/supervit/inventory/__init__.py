"""The node's service inventory: what it advertises at registration and reports on each interval.

A neutral room: the client reads it to build RegisterNode/Report, the node's callback server flips
services on SERVICE_ENABLED. Neither owns it, so both import it from here.
"""

from supervit.inventory._collector import ServiceCollector, ServiceInfo, ServiceState

__all__ = ["ServiceCollector", "ServiceInfo", "ServiceState"]
