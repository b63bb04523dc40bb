"""A data owner in its own process, driven line by line from the benchmark.

``python -m mpc_bench.owner --cluster F --identity NAME --data FILE.npz --job JSON``
loads its arrays (untimed), connects, then obeys JSON commands on stdin:

* ``{"cmd": "upload"}``: upload every array in the file (overwrite), each
  with one pinned grant (``Grant.pinned``) allowing the receiver exactly the
  prediction job whose input mapping ``--job`` gives, e.g.
  ``{"features": ["bank-1/X", "bank-2/X"], "weights": "model-owner/w",
  "intercept": "model-owner/c"}``; answer ``{"ok": true}``. The inputs are
  pinned by name, not version: every owner re-uploads in every repetition;
* ``{"cmd": "run", ...}``: (model owner) run ``linear_regression.predict``
  and reconstruct, answer ``{"ok": true}`` at once and then
  ``{"max_abs_error": e}`` against the ``reference`` array of the file;
* ``{"cmd": "quit"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mpc_client import Grant, MpcClient

PROGRAM = "linear_regression.predict"


def _reply(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


def main() -> int:
    """Serve commands until ``quit`` or end of input."""
    parser = argparse.ArgumentParser(description="benchmark data owner (driven by mpc bench)")
    parser.add_argument("--cluster", type=Path, required=True)
    parser.add_argument("--identity", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--receiver", default="model-owner")
    parser.add_argument(
        "--job", type=json.loads, required=True, help="the job's input mapping (JSON), pinned in the grant"
    )
    args = parser.parse_args()
    data = dict(np.load(args.data))
    reference = data.pop("reference", None)
    certs = args.cluster.parent / "certs"
    grant = [Grant.pinned(args.receiver, PROGRAM, args.job)]
    with MpcClient.connect(
        args.cluster, certs / f"{args.identity}.pem", certs / f"{args.identity}.key"
    ) as client:
        _reply({"ready": True})
        for line in sys.stdin:
            command = json.loads(line)
            if command["cmd"] == "quit":
                break
            if command["cmd"] == "upload":
                for name, values in data.items():
                    client.upload(name, values, grants=grant, overwrite=True)
                _reply({"ok": True})
            elif command["cmd"] == "run":
                _, predictions = client.run_and_fetch(PROGRAM, command["inputs"])
                _reply({"ok": True})
                error = float(np.abs(predictions - reference).max()) if reference is not None else None
                _reply({"max_abs_error": error})
    return 0


if __name__ == "__main__":
    sys.exit(main())
