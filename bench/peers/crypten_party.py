"""One CrypTen party of the side-by-side benchmark (runs in the CrypTen venv).

Started three times by ``mpc_bench.peers.runner`` with torch.distributed's
env:// rendezvous (gloo, loopback). Per repetition: barrier, input sharing
from the owning parties, the secure operation, reveal to all parties
(``get_plain_text``); CrypTen's defaults otherwise (a trusted-first-party
dealer, 16 fractional bits, no TLS). Prints one JSON line with the
repetition times, the error against float64 and CrypTen's own traffic count.

Workloads: ``multiply`` x*y (x from rank 0, y from rank 1); ``linreg``
X w + c (X's left half from rank 0, right half from rank 1, w and c from
rank 2); ``dot`` x.dot(y).
"""

import argparse
import json
import time

import numpy as np
import torch


def _inputs(kind, n, d, generator):
    if kind == "linreg":
        return {
            "X": torch.randn(n, d, generator=generator),
            "w": torch.randn(d, generator=generator),
            "c": torch.randn(1, generator=generator),
        }
    return {"x": torch.randn(n, generator=generator), "y": torch.randn(n, generator=generator)}


def _reference(kind, data):
    if kind == "multiply":
        return data["x"].double().numpy() * data["y"].double().numpy()
    if kind == "dot":
        return np.array(data["x"].double().numpy() @ data["y"].double().numpy())
    return data["X"].double().numpy() @ data["w"].double().numpy() + float(data["c"][0])


def _share(crypten, tensor, owner, rank):
    # Every party passes a tensor of the right shape; only the owner's values count.
    return crypten.cryptensor(tensor if rank == owner else torch.zeros_like(tensor), src=owner)


def _once(crypten, comm, kind, data, rank):
    comm.get().barrier()
    started = time.perf_counter()
    if kind == "linreg":
        half = data["X"].shape[1] // 2
        left = _share(crypten, data["X"][:, :half].contiguous(), 0, rank)
        right = _share(crypten, data["X"][:, half:].contiguous(), 1, rank)
        w, c = _share(crypten, data["w"], 2, rank), _share(crypten, data["c"], 2, rank)
        result = crypten.cat([left, right], dim=1).matmul(w) + c
    else:
        x, y = _share(crypten, data["x"], 0, rank), _share(crypten, data["y"], 1, rank)
        result = x * y if kind == "multiply" else x.dot(y)
    plain = result.get_plain_text()
    return time.perf_counter() - started, plain


def main():
    """Run the repetitions and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["multiply", "linreg", "dot"])
    parser.add_argument("-n", type=int, required=True)
    parser.add_argument("-d", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import crypten  # noqa: PLC0415 - after torch's thread setting
    import crypten.communicator as comm  # noqa: PLC0415
    from crypten.config import cfg  # noqa: PLC0415

    crypten.init()
    rank = comm.get().get_rank()
    data = _inputs(args.kind, args.n, args.d, torch.Generator().manual_seed(1234))
    reference = _reference(args.kind, data)
    cfg.communicator.verbose = True
    crypten.reset_communication_stats()
    _once(crypten, comm, args.kind, data, rank)  # warm-up, and one counted run
    stats = dict(comm.get().get_communication_stats())
    cfg.communicator.verbose = False
    times, error = [], 0.0
    for _ in range(args.reps):
        elapsed, plain = _once(crypten, comm, args.kind, data, rank)
        times.append(elapsed)
        error = max(error, float(np.abs(plain.double().numpy().reshape(reference.shape) - reference).max()))
    print(
        json.dumps(
            {
                "rank": rank,
                "times": times,
                "max_abs_error": error,
                "bytes": stats.get("bytes", 0),
                "rounds": stats.get("rounds", 0),
            }
        ),
        flush=True,
    )
    comm.get().barrier()
    crypten.uninit()


if __name__ == "__main__":
    main()
