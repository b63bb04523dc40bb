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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mpc_client import Grant, MpcClient

PROGRAM = "linear_regression.predict"


Handler = Callable[[MpcClient, dict[str, Any]], None]
"""What one stdin command does (it answers with :func:`reply` itself)."""


def reply(message: dict[str, Any]) -> None:
    """One JSON line to the benchmark."""
    print(json.dumps(message), flush=True)


def serve(cluster: Path, identity: str, handlers: Mapping[str, Handler]) -> int:
    """Connect as ``identity``, answer ``{"ready": true}``, then obey stdin until ``quit``.

    Commands without a handler are ignored.
    """
    certs = cluster.parent / "certs"
    with MpcClient.connect(cluster, certs / f"{identity}.pem", certs / f"{identity}.key") as client:
        reply({"ready": True})
        for line in sys.stdin:
            command = json.loads(line)
            if command["cmd"] == "quit":
                break
            handler = handlers.get(command["cmd"])
            if handler is not None:
                handler(client, command)
    return 0


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
    grant = [Grant.pinned(args.receiver, PROGRAM, args.job)]

    def upload(client: MpcClient, command: dict[str, Any]) -> None:
        for name, values in data.items():
            client.upload(name, values, grants=grant, overwrite=True)
        reply({"ok": True})

    def run(client: MpcClient, command: dict[str, Any]) -> None:
        _, predictions = client.run_and_fetch(PROGRAM, command["inputs"])
        reply({"ok": True})
        error = float(np.abs(predictions - reference).max()) if reference is not None else None
        reply({"max_abs_error": error})

    return serve(args.cluster, args.identity, {"upload": upload, "run": run})


if __name__ == "__main__":
    sys.exit(main())
