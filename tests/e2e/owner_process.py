"""A data owner in its own OS process: uploads the arrays of an .npz file, then exits.

Used by the end-to-end tests that need owners on separate processes, as in
production (each organisation runs its own client)::

    python tests/e2e/owner_process.py CLUSTER_FILE IDENTITY DATA.npz RECEIVER:PROGRAM ...

Every array of the file becomes a dataset of that name, granted to each
``RECEIVER:PROGRAM`` pair. Prints one JSON line per dataset.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from mpc_client import Grant, MpcClient


def main(argv: list[str]) -> int:
    """Upload every array of the data file; exit 0 when all are stored."""
    cluster, identity, data, *grant_specs = argv
    certs = Path(cluster).parent / "certs"
    grants = [Grant(*spec.split(":", 1)) for spec in grant_specs]
    arrays = dict(np.load(data))
    with MpcClient.connect(cluster, certs / f"{identity}.pem", certs / f"{identity}.key") as owner:
        for name, values in arrays.items():
            ref = owner.upload(name, values, grants=grants, overwrite=True)
            print(json.dumps({"dataset": str(ref), "shape": list(values.shape)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
