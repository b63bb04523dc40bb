"""Python SDK of the three-server MPC service.

Typical use by a data owner and a model owner, each in its own process::

    from mpc_client import Grant, MpcClient

    PREDICT = "linear_regression.predict"
    JOB = {"features": ["bank-1/income", "bank-2/debt"], "weights": "model-owner/weights"}
    with MpcClient.connect("cluster.toml", "model-owner.pem", "model-owner.key") as owner:
        weights = owner.upload("weights", [0.25, -0.8], grants=[Grant.pinned("model-owner", PREDICT, JOB)])
        # ... tells the banks weights.pinned: "model-owner/weights@<version>"

    with MpcClient.connect("cluster.toml", "bank-1.pem", "bank-1.key") as bank:
        pinned = dict(JOB, weights=weights.pinned)  # replacing the model voids the grant
        bank.upload("income", incomes, grants=[Grant.pinned("model-owner", PREDICT, pinned)])

    with MpcClient.connect("cluster.toml", "model-owner.pem", "model-owner.key") as owner:
        predictions = owner.fetch(owner.run(PREDICT, JOB))

The SDK imports only the pure core and the generated protocol code, never
the server.
"""

from mpc_client._align import TokenIntegrityError
from mpc_client._tables import Table, table_from_arrays
from mpc_client.client import MpcClient
from mpc_client.types import (
    SELF,
    AuditInput,
    DatasetInfo,
    DatasetRef,
    Grant,
    GrantScope,
    GrantState,
    JobRecord,
    JobResult,
    Keep,
    Listing,
    OutputDescription,
    ProgramDescription,
    Select,
    ServerInfo,
    ServerJobStats,
)
from mpc_core.errors import (
    AlreadyExistsError,
    ConfigError,
    DataLossError,
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
    "SELF",
    "AlreadyExistsError",
    "AuditInput",
    "ConfigError",
    "DataLossError",
    "DatasetInfo",
    "DatasetRef",
    "EncodingError",
    "FailedPreconditionError",
    "Grant",
    "GrantScope",
    "GrantState",
    "InvalidArgumentError",
    "JobAbortedError",
    "JobRecord",
    "JobResult",
    "Keep",
    "Listing",
    "MpcClient",
    "MpcError",
    "NotFoundError",
    "OutputDescription",
    "OutputIntegrityError",
    "PermissionDeniedError",
    "ProgramDescription",
    "ProtocolTimeoutError",
    "ResourceLimitError",
    "Select",
    "ServerInfo",
    "ServerJobStats",
    "ServerUnavailableError",
    "ShareFormatError",
    "Table",
    "TokenIntegrityError",
    "UnauthenticatedError",
    "table_from_arrays",
]
