"""A bank in its own process for the alignment rows, driven line by line from the benchmark.

``python -m mpc_bench.align_owner --cluster F --identity NAME --data FILE.npz``
loads its customers (``ids``, feature ``values``, ``columns``; the receiver
also ``reference_ids`` and ``reference``) into a pandas DataFrame (untimed),
connects, answers ``{"ready": true}``, then obeys JSON commands on stdin:

* ``{"cmd": "upload", "alignment": A, "name": N, "job": {...}, "receivers": [...]}``:
  ``upload_table`` keyed by the id column (the SDK turns the ids into A's
  tokens with the servers' OPRF, shuffles the rows and uploads), with one
  pinned grant per receiver for exactly ``linear_regression.predict`` on
  ``job``; answers ``{"ok": true, "tokens_s": ..., "total_s": ...}``
  (tokens_s: until the last id's token, from the SDK's progress callback);
* ``{"cmd": "predict", "job": {...}}``: ``run`` the prediction on the join,
  then ``fetch_table``; answers ``{"rows": ..., "max_abs_error": ...,
  "run_s": ..., "fetch_s": ...}`` against the plaintext inner join;
* ``{"cmd": "quit"}``.

The key map (``$MPC_KEY_DIR``) is where the benchmark puts it: a scratch directory.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mpc_client import Grant, MpcClient

from .owner import reply, serve

PROGRAM = "linear_regression.predict"


class _Phases:
    """The SDK's progress callback: ids first (the tokens), then bytes (the upload)."""

    def __init__(self, ids: int) -> None:
        self.ids, self.done, self.tokens_at = ids, 0, 0.0

    def __call__(self, count: int) -> None:
        if self.done < self.ids:
            self.done += count
            if self.done >= self.ids:
                self.tokens_at = time.perf_counter()


def _upload(client: MpcClient, frame: pd.DataFrame, command: dict[str, Any]) -> dict[str, Any]:
    grants = [Grant.pinned(receiver, PROGRAM, command["job"]) for receiver in command["receivers"]]
    phases = _Phases(len(frame))
    started = time.perf_counter()
    client.upload_table(
        command["name"], frame, key="customer_id", alignment=command["alignment"], grants=grants,
        overwrite=True, progress=phases, timeout=3600,
    )  # fmt: skip
    ended = time.perf_counter()
    return {"ok": True, "tokens_s": phases.tokens_at - started, "total_s": ended - started}


def _predict(client: MpcClient, reference: pd.Series, command: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    result = client.run(PROGRAM, command["job"], timeout=3600)
    ran = time.perf_counter()
    table = client.fetch_table(result, timeout=3600)
    fetched = time.perf_counter()
    error = float(np.abs(table.loc[reference.index].to_numpy() - reference.to_numpy()).max())
    stats = sorted(result.stats.items())
    return {
        "rows": len(table),
        "expected_rows": len(reference),
        "max_abs_error": error,
        "run_s": ran - started,
        "fetch_s": fetched - ran,
        "rounds_per_server": [s.rounds for _, s in stats],
        "bytes_sent_per_server": [s.bytes_sent_to_peers for _, s in stats],
    }


def main() -> int:
    """Serve commands until ``quit`` or end of input."""
    parser = argparse.ArgumentParser(
        description="benchmark bank for the alignment rows (driven by mpc bench)"
    )
    parser.add_argument("--cluster", type=Path, required=True)
    parser.add_argument("--identity", required=True)
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    data = np.load(args.data)
    frame = pd.DataFrame(data["values"], columns=[str(c) for c in data["columns"]])
    frame.insert(0, "customer_id", data["ids"].astype(str))
    reference = pd.Series(dtype=float)
    if "reference" in data:
        reference = pd.Series(data["reference"], index=data["reference_ids"].astype(str))
    return serve(
        args.cluster,
        args.identity,
        {
            "upload": lambda client, command: reply(_upload(client, frame, command)),
            "predict": lambda client, command: reply(_predict(client, reference, command)),
        },
    )


if __name__ == "__main__":
    sys.exit(main())
