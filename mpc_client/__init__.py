"""Python SDK of the three-server MPC service.

Typical use by a data owner and a model owner, each in its own process::

    from mpc_client import Grant, MpcClient

    with MpcClient.connect("cluster.toml", "bank-1.pem", "bank-1.key") as bank:
        bank.upload("income", incomes,
                    grants=[Grant("model-owner", "linear_regression.predict")])

    with MpcClient.connect("cluster.toml", "model-owner.pem", "model-owner.key") as owner:
        owner.upload("weights", [0.25, -0.8], grants=[Grant("model-owner", "linear_regression.predict")])
        job = owner.run("linear_regression.predict",
                        {"features": ["bank-1/income", "bank-2/debt"], "weights": "weights"})
        predictions = owner.fetch(job)

The SDK imports only the pure core and the generated protocol code, never
the server.
"""

from mpc_client.client import MpcClient
from mpc_client.types import DatasetRef, Grant, JobResult, ServerInfo, ServerJobStats
from mpc_core.errors import (
    AlreadyExistsError,
    ConfigError,
    EncodingError,
    FailedPreconditionError,
    InvalidArgumentError,
    JobAbortedError,
    MpcError,
    NotFoundError,
    OutputIntegrityError,
    PermissionDeniedError,
    ProtocolTimeoutError,
    ResourceLimitError,
    ServerUnavailableError,
    ShareFormatError,
    UnauthenticatedError,
)

__all__ = [
    "AlreadyExistsError",
    "ConfigError",
    "DatasetRef",
    "EncodingError",
    "FailedPreconditionError",
    "Grant",
    "InvalidArgumentError",
    "JobAbortedError",
    "JobResult",
    "MpcClient",
    "MpcError",
    "NotFoundError",
    "OutputIntegrityError",
    "PermissionDeniedError",
    "ProtocolTimeoutError",
    "ResourceLimitError",
    "ServerInfo",
    "ServerJobStats",
    "ServerUnavailableError",
    "ShareFormatError",
    "UnauthenticatedError",
]
