"""The exceptions of the development tools. They are not `worker.errors.WorkerError`s: the product
never raises them, and its CLI never has to tell them apart from its own.

    DevToolError
    ├── LocalBrokerError     the local broker cannot be fetched, started or stopped
    │   └── PortInUseError   a port the broker needs is taken
    └── PrometheusError      the local Prometheus is missing, did not start, or a query failed

str(error) names the problem and the fix, in one line where it can.
"""

from __future__ import annotations


class DevToolError(Exception):
    """Root of the development tools' own exceptions."""


class LocalBrokerError(DevToolError):
    """The local broker cannot be fetched, started or stopped; str(error) names the problem and the fix."""


class PortInUseError(LocalBrokerError):
    """A port the broker needs is taken."""


class PrometheusError(DevToolError):
    """The local Prometheus is missing, did not start, or answered a query with an error."""
