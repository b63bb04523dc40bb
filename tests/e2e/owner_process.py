"""A data owner in its own OS process: uploads the arrays of an .npz file, then exits.

Used by the end-to-end tests that need owners on separate processes, as in
production (each organisation runs its own client)::

    python tests/e2e/owner_process.py CLUSTER_FILE IDENTITY DATA.npz RECEIVER PROGRAM JOBS.json

Every array of the file becomes a dataset of that name, with one pinned grant
(``Grant.pinned``): ``RECEIVER`` may get outputs of ``PROGRAM`` from exactly
the job whose input mapping ``JOBS.json`` gives under the array's name (as
passed to ``run``; entries may carry versions, ``owner/name@version``).
Prints one JSON line per dataset, with its pinned name (``ref.pinned``) for
the grants of the owners that upload after it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from mpc_client import Grant, MpcClient


def main(argv: list[str]) -> int:
    """Upload every array of the data file; exit 0 when all are stored."""
    cluster, identity, data, receiver, program, jobs_file = argv
    certs = Path(cluster).parent / "certs"
    jobs = json.loads(Path(jobs_file).read_text())
    arrays = dict(np.load(data))
    with MpcClient.connect(cluster, certs / f"{identity}.pem", certs / f"{identity}.key") as owner:
        for name, values in arrays.items():
            grants = [Grant.pinned(receiver, program, jobs[name])]
            ref = owner.upload(name, values, grants=grants, overwrite=True)
            print(
                json.dumps({"dataset": str(ref), "pinned": ref.pinned, "shape": list(values.shape)}),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
