"""One MPyC party of the side-by-side benchmark (runs in the MPyC venv).

Started three times by ``mpc_bench.peers.runner`` (``-M3 -I<i> --ssl``):
MPyC's defaults, i.e. Shamir sharing with threshold 1 over a prime field,
secure fixed point ``SecFxp()`` (32 bits, 16 fractional), TLS between the
parties. Per repetition: barrier, input sharing from the owning parties, the
secure operation, output to all parties. Party 0 prints one JSON line.

Workloads as in ``crypten_party.py``: ``multiply`` (x from party 0, y from
party 1), ``linreg`` (X's halves from parties 0 and 1, w and c from party
2), ``dot``.
"""

import argparse
import json
import time

import numpy as np
from mpyc.runtime import mpc


def _inputs(kind, n, d):
    generator = np.random.default_rng(1234)  # benchmark data only, identical at all parties
    if kind == "linreg":
        return {
            "X": generator.normal(size=(n, d)),
            "w": generator.normal(size=d),
            "c": generator.normal(size=1),
        }
    return {"x": generator.normal(size=n), "y": generator.normal(size=n)}


def _reference(kind, data):
    if kind == "multiply":
        return data["x"] * data["y"]
    if kind == "dot":
        return np.array(data["x"] @ data["y"])
    return data["X"] @ data["w"] + data["c"][0]


def _encode(secfxp, array, owner):
    # Every party passes an array of the right shape; only the owner's values count.
    return secfxp.array(array if mpc.pid == owner else np.zeros(array.shape), integral=False)


async def _once(secfxp, kind, data):
    await mpc.barrier()
    await mpc.transfer(mpc.pid)  # all parties start together
    started = time.perf_counter()
    if kind == "linreg":
        half = data["X"].shape[1] // 2
        left = mpc.input(_encode(secfxp, data["X"][:, :half], 0), senders=0)
        right = mpc.input(_encode(secfxp, data["X"][:, half:], 1), senders=1)
        w = mpc.input(_encode(secfxp, data["w"], 2), senders=2)
        c = mpc.input(_encode(secfxp, data["c"], 2), senders=2)
        result = await mpc.output(mpc.np_hstack((left, right)) @ w + c)
    else:
        x = mpc.input(_encode(secfxp, data["x"], 0), senders=0)
        y = mpc.input(_encode(secfxp, data["y"], 1), senders=1)
        result = await mpc.output(x * y if kind == "multiply" else x @ y)
    return time.perf_counter() - started, np.asarray(result, dtype=float)


async def main():
    """Run the repetitions; party 0 prints one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["multiply", "linreg", "dot"])
    parser.add_argument("-n", type=int, required=True)
    parser.add_argument("-d", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    secfxp = mpc.SecFxp()
    data = _inputs(args.kind, args.n, args.d)
    reference = _reference(args.kind, data)
    await mpc.start()
    times, error = [], 0.0
    bytes_before = sum(p.protocol.nbytes_sent for p in mpc.parties if p.pid != mpc.pid)
    for _ in range(args.reps):
        elapsed, result = await _once(secfxp, args.kind, data)
        times.append(elapsed)
        error = max(error, float(np.abs(result.reshape(reference.shape) - reference).max()))
    sent = sum(p.protocol.nbytes_sent for p in mpc.parties if p.pid != mpc.pid) - bytes_before
    if mpc.pid == 0:
        print(
            json.dumps({"times": times, "max_abs_error": error, "bytes_per_party": sent / args.reps}),
            flush=True,
        )
    await mpc.shutdown()


if __name__ == "__main__":
    mpc.run(main())
