"""One CrypTen party of the training and comparison rows (runs in the CrypTen venv).

Started three times by ``mpc_bench.peers.runner`` like ``crypten_party.py``
(gloo, env:// rendezvous, loopback, CrypTen's defaults: a trusted-first-party
dealer, 16 fractional bits in Z_2^64, no TLS). Per repetition: barrier, input
sharing from the owning parties (timed apart: ``sharing_s``), barrier, then
the timed part, as ours from shares already on the servers: the computation
with CrypTen's own operations and the reveal to all parties
(``get_plain_text``). Prints one JSON line per party: repetition times, the
error against float64 on the same data, CrypTen's own traffic count of one
run, CPU seconds (its own and the machine's) per repetition.

Workloads (the same algorithms as our programs; only the data's values
differ, drawn from the same distributions):

* ``stats``: 3 owners' blocks of X (N x d, columns split as numpy's
  array_split, from ranks 0, 1, 2); sum, mean, centred Gram ``Xc^T Xc / N``
  (covariance, ddof 0), its diagonal (variance), ``inv_sqrt`` of it and the
  correlation ``cov * (r r^T)``;
* ``fit-ridge`` / ``fit-ols``: X's halves from ranks 0 and 1, the label from
  rank 2; ``Z = [X | y]`` centred at its means, ``G = Zc^T Zc / N`` (so X^T X
  and X^T y in one Beaver matmul), ``A = G_xx + l2/N I``; Newton-Schulz in the
  product form our solver uses (``[R | W] <- R [R | W] + [0 | W]`` from
  ``R_0 = I - A/t``, ``W_0 = b/t``, t the public trace bound) with ``--solver``
  iterations; the intercept ``mu_y - w . mu_x``;
* ``decide``: ``crypten.cryptensor(score) > t`` (score from rank 0);
* ``compare``: ``x > t`` on ``x`` already shared (from rank 0, before the
  clock): only the comparison is timed and counted, its result left in shares;
  the reveal for the error check is untimed;
* ``logistic``: X's halves from ranks 0 and 1 (standardised), the 0/1 label
  from rank 2; ``Z = [X | 1]``; fixed-Hessian Newton (Boehning's bound ``H =
  Z^T Z / (4N) + l2 I'``, inverted once by the same Newton-Schulz, ``B = I``)
  with ``--iterations`` steps ``w' = clip(v + V g, -W, W)``, ``g = Z^T (y -
  sigmoid(Z v)) / N - l2 v'`` (CrypTen's sigmoid, its default "reciprocal"
  method; the first step takes p = 1/2 as ours does), and the same Nesterov
  momentum ``v = w' + beta_t (w' - w)`` (``--momentum``, our plan's betas).
"""

import argparse
import json
import os
import time

import numpy as np
import torch

CPU = {"own": [], "busy": []}
"""Per timed repetition: this party's CPU seconds, and the whole machine's (``/proc/stat``, all cores)."""


def _machine_busy():
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def _cpu_counted(call):
    """``call()``, adding its CPU use (own and machine-wide) to ``CPU``."""
    own, busy = time.process_time(), _machine_busy()
    result = call()
    CPU["own"].append(time.process_time() - own)
    CPU["busy"].append(_machine_busy() - busy)
    return result


KINDS = ["stats", "fit-ridge", "fit-ols", "decide", "compare", "logistic"]


def _data(kind, n, d, generator):
    if kind == "stats":
        scale = 0.5 + 4.5 * torch.rand(d, generator=generator)
        shift = 6 * torch.rand(d, generator=generator) - 3
        return {"X": torch.randn(n, d, generator=generator) * scale + shift}
    if kind in {"decide", "compare"}:
        return {"score": torch.randn(n, generator=generator)}
    mixing = torch.eye(d) + 0.3 * torch.randn(d, d, generator=generator) / d**0.5
    x = torch.randn(n, d, generator=generator) @ mixing
    if kind == "logistic":
        x = (x - x.mean(0)) / x.std(0, unbiased=False)
        logits = x @ torch.randn(d, generator=generator) + 0.3
        return {"X": x, "y": (torch.rand(n, generator=generator) < torch.sigmoid(logits)).float()}
    w = torch.randn(d, generator=generator)
    return {"X": x, "y": x @ w + 0.5 + 0.1 * torch.randn(n, generator=generator)}


def _share(crypten, tensor, owner, rank):
    return crypten.cryptensor(tensor if rank == owner else torch.zeros_like(tensor), src=owner)


def _blocks(crypten, x, owners, rank):
    columns = np.array_split(np.arange(x.shape[1]), len(owners))
    parts = [
        _share(crypten, x[:, c[0] : c[-1] + 1].contiguous(), owner, rank)
        for c, owner in zip(columns, owners, strict=True)
    ]
    return crypten.cat(parts, dim=1)


def _newton_schulz(crypten, a, rhs, trace_bound, iterations):
    """``W = A^-1 rhs`` in the product form: ``[R | W] <- R [R | W] + [0 | W]``, the last step W only."""
    d = a.size(0)
    r = a.mul(-1.0 / trace_bound) + torch.eye(d)
    w = rhs.mul(1.0 / trace_bound)
    for k in range(iterations):
        if k == iterations - 1:
            w = r.matmul(w) + w
        else:
            both = r.matmul(crypten.cat([r, w], dim=1))
            r, w = both[:, :d], both[:, d:] + w
    return w


def _stats(crypten, x):
    n, d = x.size(0), x.size(1)
    total = x.sum(0)
    mean = total.div(n)
    centred = x - mean
    covariance = centred.t().matmul(centred).div(n)
    variance = covariance.flatten().take(torch.arange(0, d * d, d + 1))
    r = variance.inv_sqrt()
    correlation = covariance * r.unsqueeze(1).matmul(r.unsqueeze(0))
    return [t.get_plain_text() for t in (total, mean, variance, covariance, correlation)]


def _stats_reference(data):
    x = data["X"].double().numpy()
    return [x.sum(0), x.mean(0), x.var(0), np.cov(x, rowvar=False, ddof=0), np.corrcoef(x, rowvar=False)]


def _fit(crypten, x, y, options):
    z = crypten.cat([x, y.unsqueeze(1)], dim=1)
    n, d = x.size(0), x.size(1)
    means = z.mean(0)
    centred = z - means
    gram = centred.t().matmul(centred).div(n)
    a = gram[:d, :d] + torch.eye(d) * (options.l2 / n)
    b = gram[:d, d:]
    w = _newton_schulz(crypten, a, b, options.trace_bound, options.solver).flatten()
    intercept = means[d] - w.dot(means[:d])
    return [w.get_plain_text(), intercept.get_plain_text()]


def _fit_reference(data, l2):
    x, y = data["X"].double().numpy(), data["y"].double().numpy()
    mx, my = x.mean(0), y.mean()
    xc, yc = x - mx, y - my
    w = np.linalg.solve(xc.T @ xc + l2 * np.eye(x.shape[1]), xc.T @ yc)
    return [w, np.array(my - w @ mx)]


def _clip(x, limit):
    return x - (x - limit).relu() + (-x - limit).relu()


def _logistic(crypten, x, y, options):
    n, d = x.size(0), x.size(1)
    z = crypten.cat([x, crypten.cryptensor(torch.ones(n, 1))], dim=1)
    penalised = torch.ones(d + 1)
    penalised[d] = 0
    h = z.t().matmul(z).div(4 * n) + torch.diag(penalised) * options.l2
    inverse = _newton_schulz(
        crypten, h, crypten.cryptensor(torch.eye(d + 1)), options.trace_bound, options.solver
    )
    w = v = crypten.cryptensor(torch.zeros(d + 1))
    for step, beta in zip(range(options.iterations), options.momentum, strict=True):
        p = 0.5 if step == 0 else z.matmul(v).sigmoid()
        gradient = z.t().matmul(y - p).div(n) - v * (penalised * options.l2)
        updated = _clip(v + inverse.matmul(gradient), options.clip)
        w, v = updated, updated + (updated - w) * beta
    return [w[:d].get_plain_text(), w[d].get_plain_text()]


def _logistic_reference(data, options):
    """The same iteration in float64 with the exact sigmoid (and the clip)."""
    x, y = data["X"].double().numpy(), data["y"].double().numpy()
    n, d = x.shape
    z = np.hstack([x, np.ones((n, 1))])
    penalised = np.r_[np.ones(d), 0.0]
    inverse = np.linalg.inv(z.T @ z / (4 * n) + np.diag(penalised) * options.l2)
    w = v = np.zeros(d + 1)
    for step, beta in zip(range(options.iterations), options.momentum, strict=True):
        p = 0.5 if step == 0 else 1 / (1 + np.exp(-(z @ v)))
        updated = np.clip(
            v + inverse @ (z.T @ (y - p) / n - v * penalised * options.l2), -options.clip, options.clip
        )
        w, v = updated, updated + beta * (updated - w)
    return [w[:d], np.array(w[d])]


def _inputs(crypten, kind, data, rank):
    """The row's inputs secret-shared from their owners (CrypTen's input sharing: PRZS, no messages)."""
    if kind == "stats":
        return [_blocks(crypten, data["X"], [0, 1, 2], rank)]
    if kind == "decide":
        return [_share(crypten, data["score"], 0, rank)]
    return [_blocks(crypten, data["X"], [0, 1], rank), _share(crypten, data["y"], 2, rank)]


def _compute(crypten, kind, shared, options):
    if kind == "stats":
        return _stats(crypten, *shared)
    if kind == "decide":
        return [(shared[0] > options.threshold).get_plain_text()]
    if kind == "logistic":
        return _logistic(crypten, *shared, options)
    return _fit(crypten, *shared, options)


SHARING_S = []
"""Per timed repetition: this party's input sharing, timed apart (barrier to barrier)."""


def _once(crypten, comm, kind, data, rank, *, options):
    """Barrier, input sharing, barrier, then the timed part: the computation and the reveal."""
    comm.get().barrier()
    started = time.perf_counter()
    shared = _inputs(crypten, kind, data, rank)
    comm.get().barrier()
    shared_at = time.perf_counter()
    plain = _compute(crypten, kind, shared, options)
    elapsed = time.perf_counter() - shared_at
    SHARING_S.append(shared_at - started)
    return elapsed, [p.double().numpy() for p in plain]


def _compare_once(comm, shared, options):
    """Time ``x > t`` alone (after a barrier); the result stays in shares."""
    comm.get().barrier()
    started = time.perf_counter()
    result = shared > options.threshold
    elapsed = time.perf_counter() - started
    return elapsed, result


def _compare(crypten, comm, data, rank, options):
    """The compare row: counted run, then ``--reps`` timed comparisons; times, error, traffic."""
    from crypten.config import cfg  # noqa: PLC0415

    shared = _share(crypten, data["score"], 0, rank)
    expected = (data["score"].double().numpy() > options.threshold).astype(float)
    cfg.communicator.verbose = True
    crypten.reset_communication_stats()
    _compare_once(comm, shared, options)
    stats = dict(comm.get().get_communication_stats())
    cfg.communicator.verbose = False
    times, error = [], 0.0
    for _ in range(options.reps):
        elapsed, result = _cpu_counted(lambda: _compare_once(comm, shared, options))
        times.append(elapsed)
        plain = result.get_plain_text().double().numpy()
        error = max(error, float(np.sum(plain.reshape(-1) != expected)))
    return times, error, stats


def _error(kind, plain, reference):
    if kind == "decide":
        return float(np.sum(plain[0].reshape(-1) != reference[0]))  # wrong decisions
    worst = 0.0
    for got, wanted in zip(plain, reference, strict=True):
        expected = np.asarray(wanted, dtype=float)
        relative = np.abs(got.reshape(expected.shape) - expected) / np.maximum(1.0, np.abs(expected))
        worst = max(worst, float(np.nanmax(relative)))
    return worst


def _reference(kind, data, options):
    if kind == "stats":
        return _stats_reference(data)
    if kind == "decide":
        return [(data["score"].double().numpy() > options.threshold).astype(float)]
    if kind == "logistic":
        return _logistic_reference(data, options)
    return _fit_reference(data, options.l2)


def _print(rank, times, error, stats, barriers=1):
    record = {
        "rank": rank,
        "times": times,
        "max_abs_error": error,
        "bytes": stats.get("bytes", 0),
        "rounds": stats.get("rounds", barriers) - barriers,  # without the barriers (no bytes)
        "cpu_s": CPU["own"],
        "sharing_s": SHARING_S[-len(times) :] if SHARING_S else [],
        "busy_s": CPU["busy"],
    }
    print(json.dumps(record), flush=True)


def main():
    """Run the repetitions and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("-n", type=int, required=True)
    parser.add_argument("-d", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--l2", type=float, default=0.0)
    parser.add_argument("--solver", type=int, default=20, help="Newton-Schulz iterations")
    parser.add_argument("--trace-bound", type=float, default=20.0)
    parser.add_argument("--iterations", type=int, default=30, help="logistic: Newton steps")
    parser.add_argument("--momentum", type=json.loads, default=None, help="logistic: beta per step (JSON)")
    parser.add_argument("--clip", type=float, default=64.0, help="logistic: the weights' clip W")
    parser.add_argument("--threshold", type=float, default=0.1)
    options = parser.parse_args()
    if options.momentum is None:
        options.momentum = [0.0] * options.iterations
    torch.set_num_threads(1)
    import crypten  # noqa: PLC0415 - after torch's thread setting
    import crypten.communicator as comm  # noqa: PLC0415
    from crypten.config import cfg  # noqa: PLC0415

    crypten.init()
    rank = comm.get().get_rank()
    kind = options.kind
    data = _data(kind, options.n, options.d, torch.Generator().manual_seed(1234))
    if kind == "compare":
        times, error, stats = _compare(crypten, comm, data, rank, options)
        _print(rank, times, error, stats)
        comm.get().barrier()
        crypten.uninit()
        return
    reference = _reference(kind, data, options)
    cfg.communicator.verbose = True
    crypten.reset_communication_stats()
    _once(crypten, comm, kind, data, rank, options=options)  # warm-up, and one counted run
    stats = dict(comm.get().get_communication_stats())
    cfg.communicator.verbose = False
    times, error = [], 0.0
    for _ in range(options.reps):
        elapsed, plain = _cpu_counted(lambda: _once(crypten, comm, kind, data, rank, options=options))
        times.append(elapsed)
        error = max(error, _error(kind, plain, reference))
    _print(rank, times, error, stats, barriers=2)
    comm.get().barrier()
    crypten.uninit()


if __name__ == "__main__":
    main()
