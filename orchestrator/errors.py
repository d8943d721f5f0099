"""The testbed's own errors, for the layers above the core (adapters, guests, engine, api).

They live in ``orchestrator.core.errors`` so that the pure core can raise them without importing
upwards; this module is the name everything else uses.
"""

from orchestrator.core.errors import (
    CanceledError,
    ConfigurationError,
    InfrastructureError,
    InternalError,
    TestbedError,
    describe_validation_error,
)

__all__ = [
    "CanceledError",
    "ConfigurationError",
    "InfrastructureError",
    "InternalError",
    "TestbedError",
    "describe_validation_error",
]
