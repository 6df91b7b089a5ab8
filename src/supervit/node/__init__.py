"""The node's callback server (SupervisedService) and its service registry."""

from supervit.node._collector import ServiceCollector, ServiceInfo, ServiceState

__all__ = ["ServiceCollector", "ServiceInfo", "ServiceState"]
