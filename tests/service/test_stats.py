"""``stats.summary`` through the three job services in memory: against numpy, refusals, Z_2^64, privacy.

Accuracy criterion, per entry: ``|ours - numpy| <= 1e-6 * max(1, |numpy|)``
against numpy on the original float64 data, with the default configuration
(Z_2^128, 32 fractional bits, outputs at 2^32). Correlations are compared only
where ``valid`` is 1; where it is 0 the row and column must be exactly 0 (and
numpy's value is NaN or meaningless). In Z_2^64 the reference is numpy on the
values as uploaded (decoded from their 16-bit fixed point), with the output
scale's and the documented error bounds as tolerance.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from sklearn import datasets  # type: ignore[import-untyped]

from mpc_core.errors import InvalidArgumentError
from mpc_core.fixed_point import FixedPoint
from mpc_core.ring import RING64, RING128, Ring
from mpc_core.sharing import reconstruct_checked, share
from mpc_core.types import PARTIES
from mpc_server.protocol.context import PartyContext
from mpc_server.protocol.memory import InMemoryNetwork
from mpc_server.protocol.setup import agree_and_setup_keys
from mpc_server.service.model import DatasetRef, JobInput, JobResult, JobSpec, KeepRequest
from mpc_server.service.programs import stats_protocol
from mpc_server.service.programs.stats import CORRELATION_ERROR_BITS, RSQRT_BITS

from .conftest import Cluster, read_access

PROGRAM = "stats.summary"
TOLERANCE = 1e-6
Matrix = npt.NDArray[np.float64]


def _upload(
    cluster: Cluster, data: Matrix, owners: int, *, fractional_bits: Sequence[int | None] | None = None
) -> list[str]:
    """Split the columns of ``data`` across ``owners`` banks; each uploads its block."""
    refs = []
    blocks = np.array_split(np.arange(data.shape[1]), owners)
    for index, columns in enumerate(blocks):
        ref = f"bank-{index + 1}/columns"
        bits = None if fractional_bits is None else fractional_bits[index]
        cluster.put(ref, data[:, columns], grants=[read_access("model-owner", PROGRAM)], fractional_bits=bits)
        refs.append(ref)
    return refs


def _summary(cluster: Cluster, refs: list[str], **options: object) -> dict[str, Matrix]:
    result = cluster.run(PROGRAM, {"columns": refs}, **options)  # type: ignore[arg-type]
    assert [o.name for o in result.outputs] == [
        "count", "sum", "mean", "variance", "covariance", "correlation", "valid",
    ]  # fmt: skip
    return {o.name: cluster.fetch(result, o.name) for o in result.outputs}


def _worst(ours: Matrix, reference: Matrix) -> float:
    return float(np.max(np.abs(ours - reference) / np.maximum(1.0, np.abs(reference))))


def _check_against_numpy(
    out: dict[str, Matrix], data: Matrix, ddof: int = 0, tolerance: float = TOLERANCE
) -> None:
    rows, d = data.shape
    assert out["count"].shape == () and float(out["count"]) == rows
    references = {
        "sum": data.sum(axis=0),
        "mean": data.mean(axis=0),
        "variance": data.var(axis=0, ddof=ddof),
        "covariance": np.cov(data, rowvar=False, ddof=ddof).reshape(d, d),
    }
    for name, reference in references.items():
        assert out[name].shape == reference.shape, name
        assert _worst(out[name], reference) <= tolerance, (name, _worst(out[name], reference))
    valid = out["valid"].astype(bool)
    assert set(np.unique(out["valid"])) <= {0.0, 1.0}
    with np.errstate(divide="ignore", invalid="ignore"):
        correlation = np.corrcoef(data, rowvar=False).reshape(d, d)
    both = np.outer(valid, valid)
    assert _worst(out["correlation"][both], correlation[both]) <= tolerance
    assert np.all(out["correlation"][~both] == 0.0)
    np.testing.assert_array_equal(out["covariance"], out["covariance"].T)


SKLEARN = {
    "diabetes-scaled": (datasets.load_diabetes().data, 3),
    "diabetes-unscaled": (datasets.load_diabetes(scaled=False).data, 2),
    "wine": (datasets.load_wine().data, 3),
    "linnerud": (np.column_stack([datasets.load_linnerud().data, datasets.load_linnerud().target]), 3),
}


@pytest.mark.parametrize("name", sorted(SKLEARN))
def test_sklearn_datasets_split_across_owners_match_numpy(cluster: Cluster, name: str) -> None:
    data, owners = SKLEARN[name]
    out = _summary(cluster, _upload(cluster, data, owners))
    _check_against_numpy(out, data)
    assert out["valid"].all()  # real columns: every correlation is reported
    np.testing.assert_allclose(np.diag(out["correlation"]), 1.0, atol=1e-9)


def _mixed_columns(rows: int = 600) -> Matrix:
    """Income-like, tiny, constant, nearly constant, hopelessly constant and ordinary columns."""
    rng = np.random.default_rng(13)
    income = 52_000 + 21_000 * rng.standard_normal(rows)
    tiny = 2e-3 + 1e-3 * rng.standard_normal(rows)
    constant = np.full(rows, 5.0)
    nearly = 1e5 + 1e-2 * rng.standard_normal(rows)  # var 1e-4 next to a bound of 2^17
    hopeless = 1e5 + 1e-9 * rng.standard_normal(rows)  # below the 2^-32 the owner encodes
    z = rng.standard_normal(rows)
    related = -3e-5 * income + 0.5 * z
    return np.column_stack([income, tiny, constant, nearly, hopeless, z, related])


@pytest.mark.parametrize("ddof", [0, 1])
def test_large_tiny_and_constant_columns(cluster: Cluster, ddof: int) -> None:
    data = _mixed_columns()
    out = _summary(cluster, _upload(cluster, data, 7), parameters={"ddof": ddof})
    _check_against_numpy(out, data, ddof)
    # a constant column's correlations are not silently made up: flagged, and exactly 0
    np.testing.assert_array_equal(out["valid"], [1, 1, 0, 1, 0, 1, 1])
    assert out["variance"][2] == 0.0 and abs(out["variance"][4]) < 1e-9


def test_columns_in_one_block_share_its_bound_and_still_match(cluster: Cluster) -> None:
    data = _mixed_columns()[:, [0, 1, 3, 5, 6]]  # tiny next to income-like in one dataset
    out = _summary(cluster, _upload(cluster, data, 1))
    _check_against_numpy(out, data)
    assert out["valid"].all()


def test_min_variance_flags_columns_and_zeroes_their_correlations(cluster: Cluster) -> None:
    rng = np.random.default_rng(3)
    data = rng.standard_normal((400, 4)) * np.array([1.0, 0.1, 3.0, 0.5])
    refs = _upload(cluster, data, 2)
    out = _summary(cluster, refs, parameters={"min_variance": 0.2})
    np.testing.assert_array_equal(out["valid"], data.var(axis=0) >= 0.2)
    _check_against_numpy(out, data)
    assert out["correlation"][1].tolist() == [0.0] * 4 and out["correlation"][:, 1].tolist() == [0.0] * 4
    everything = _summary(cluster, refs)
    assert everything["valid"].all()
    np.testing.assert_allclose(everything["covariance"], out["covariance"], rtol=0, atol=2.0**-31)


@pytest.mark.parametrize("bits", [12, 20, 48, 60])
def test_outputs_at_the_requested_scale(cluster: Cluster, bits: int) -> None:
    data = SKLEARN["diabetes-unscaled"][0]
    result = cluster.run(PROGRAM, {"columns": _upload(cluster, data, 2)}, output_fractional_bits=bits)
    assert {o.fractional_bits for o in result.outputs} == {bits}
    out = {o.name: cluster.fetch(result, o.name) for o in result.outputs}
    _check_against_numpy(out, data, tolerance=max(TOLERANCE, 2.0 ** (1 - bits)))
    for info in result.outputs:  # the bounds are true bounds (outputs may be kept as datasets)
        assert np.all(np.abs(out[info.name]) * 2.0**bits <= 2.0**info.magnitude_bits), info.name
        assert info.truncation_failure_log2 is None  # nothing probabilistic


def test_values_too_large_for_the_gram_matrix_are_pre_shifted(cluster: Cluster) -> None:
    rng = np.random.default_rng(8)
    data = np.column_stack([4e9 + 1e9 * rng.standard_normal(500), rng.standard_normal(500)])
    out = _summary(cluster, _upload(cluster, data, 2))
    _check_against_numpy(out, data)
    assert out["valid"].all()


def test_an_output_kept_as_a_dataset_is_used_by_a_later_job(cluster: Cluster) -> None:
    data = SKLEARN["wine"][0][:, :5]
    refs = _upload(cluster, data, 2)
    keep = KeepRequest("mean", "wine-means", grants=(read_access("model-owner", "dot"),))
    spec = JobSpec("keep-means", PROGRAM, tuple(JobInput("columns", DatasetRef(*r.split("/"))) for r in refs),
                   "model-owner", keep=(keep,))  # fmt: skip

    async def all_three() -> list[JobResult]:
        return list(await asyncio.gather(*(s.jobs.run("model-owner", spec, 60.0) for s in cluster.servers)))

    (result, *_) = asyncio.run(all_three())
    kept = result.outputs[2]
    assert kept.name == "mean" and kept.kept_as is not None and kept.kept_as.name == "wine-means"
    cluster.servers[0].datasets.get(kept.kept_as)  # stored on the servers, not delivered
    square = cluster.run("dot", {"x": "model-owner/wine-means", "y": "model-owner/wine-means"})
    means = data.mean(axis=0)
    assert float(cluster.fetch(square)) == pytest.approx(float(means @ means), rel=1e-9)


def test_exact_sums_and_means_for_integers_over_a_power_of_two_rows(cluster: Cluster) -> None:
    base = np.arange(256.0)
    data = np.column_stack([base % 9, (base * 37) % 101 - 50, np.full(256, 7.0)])
    out = _summary(cluster, _upload(cluster, data, 3))
    np.testing.assert_array_equal(out["sum"], data.sum(axis=0))  # exact: no truncation at F = f
    np.testing.assert_array_equal(out["mean"], data.mean(axis=0))  # exact: N = 2^8 divides exactly
    _check_against_numpy(out, data)


def test_one_column_one_row_and_64_owners(cluster: Cluster) -> None:
    one = _summary(cluster, _upload(cluster, np.array([[2.5], [4.0], [-1.0]]), 1))
    _check_against_numpy(one, np.array([[2.5], [4.0], [-1.0]]))
    assert one["correlation"][0, 0] == pytest.approx(1.0, abs=2.0**-30) and one["valid"].tolist() == [1.0]
    single = _summary(cluster, _upload(cluster, np.array([[3.0, -2.0]]), 1))
    assert float(single["count"]) == 1 and single["variance"].tolist() == [0.0, 0.0]
    assert single["valid"].tolist() == [0.0, 0.0] and not single["correlation"].any()
    rng = np.random.default_rng(4)
    data = rng.standard_normal((50, 64)) * np.geomspace(1e-2, 1e4, 64)
    _check_against_numpy(_summary(cluster, _upload(cluster, data, 64)), data)
    refs = _upload(cluster, np.ones((3, 65)), 65)
    with pytest.raises(InvalidArgumentError, match=r"takes 1\.\.64 'columns' inputs, got 65"):
        cluster.run(PROGRAM, {"columns": refs})


# ------------------------------------------------------------------------------------- refusals


def test_refusals_before_any_message(cluster: Cluster) -> None:
    cluster.network.record = True
    cluster.put("bank-1/a", np.ones((5, 2)), grants=[read_access("model-owner", PROGRAM)])
    cluster.put("bank-2/b", np.ones(6), grants=[read_access("model-owner", PROGRAM)])
    cluster.put("bank-2/one", np.ones(1), grants=[read_access("model-owner", PROGRAM)])
    cluster.put("bank-2/wide", np.ones((3, 257)), grants=[read_access("model-owner", PROGRAM)])
    cluster.put("bank-2/cube", np.ones((2, 2, 2)), grants=[read_access("model-owner", PROGRAM)])
    cases = [
        ({"columns": ["bank-1/a", "bank-2/b"]}, {}, None, "differ in row count: bank-1/a, bank-2/b"),
        ({"columns": "bank-2/wide"}, {}, None, "at most 256 columns"),
        ({"columns": "bank-2/cube"}, {}, None, r"must be a column \(N,\) or a matrix"),
        ({"columns": "bank-2/one"}, {"ddof": 1}, None, "ddof = 1 needs at least 2 rows"),
        ({"columns": "bank-1/a"}, {"ddof": 2}, None, "ddof of stats.summary must be at most 1"),
        ({"columns": "bank-1/a"}, {"min_variance": -1.0}, None, "must be at least 0"),
        ({"columns": "bank-1/a"}, {}, 127, r"output_fractional_bits must be within 0\.\.126"),
    ]
    for inputs, parameters, bits, message in cases:
        with pytest.raises(InvalidArgumentError, match=message):
            cluster.run(PROGRAM, inputs, parameters=parameters, output_fractional_bits=bits)  # type: ignore[arg-type]
    cluster.put("bank-1/huge", [2.0**62, -(2.0**62)], grants=[read_access("model-owner", PROGRAM)])
    with pytest.raises(InvalidArgumentError, match="too large for 2 rows in Z_2\\^128"):
        cluster.run(PROGRAM, {"columns": "bank-1/huge"})
    assert not cluster.network.sent  # every refusal came from the plans, before any message


# ------------------------------------------------------------------------------------- Z_2^64


@pytest.fixture
def cluster64(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path, RING64)


def _as_uploaded(data: Matrix, bits: int, ring: Ring) -> Matrix:
    fixed = FixedPoint(bits, ring)
    return np.asarray(fixed.decode(fixed.encode(data)), dtype=np.float64).reshape(data.shape)


def test_z64_small_values_match_numpy_at_its_scale(cluster64: Cluster) -> None:
    data = SKLEARN["diabetes-scaled"][0]
    out = _summary(cluster64, _upload(cluster64, data, 3, fractional_bits=[16, 16, 16]))
    uploaded = _as_uploaded(data, 16, RING64)
    _check_against_numpy(out, uploaded, tolerance=2.0**-14)  # outputs at 2^16; correlations: 2^-12
    assert out["valid"].all()


def test_z64_large_values_are_pre_shifted_and_flagged_where_imprecise(cluster64: Cluster) -> None:
    data = SKLEARN["wine"][0]  # proline up to 1680 shares its block with columns below 1
    out = _summary(cluster64, _upload(cluster64, data, 3, fractional_bits=[16, 16, 16]))
    uploaded = _as_uploaded(data, 16, RING64)
    _check_against_numpy(out, uploaded, tolerance=2e-3)
    assert 0 < out["valid"].sum() < data.shape[1]  # ash (sd 0.27) next to magnesium (~160): flagged
    alone = _summary(cluster64, _upload(cluster64, data[:, :4], 1, fractional_bits=[16]))
    _check_against_numpy(alone, uploaded[:, :4], tolerance=2.0**-13)


def test_z64_refuses_what_cannot_fit(cluster64: Cluster) -> None:
    cluster64.put(
        "bank-1/big", [1e9, -1e9, 3.0], grants=[read_access("model-owner", PROGRAM)], fractional_bits=0
    )
    with pytest.raises(InvalidArgumentError, match="too large for 3 rows in Z_2\\^64"):
        cluster64.run(PROGRAM, {"columns": "bank-1/big"})
    cluster64.put("bank-1/x", [1.0, 2.0], grants=[read_access("model-owner", PROGRAM)], fractional_bits=16)
    with pytest.raises(InvalidArgumentError, match=r"output_fractional_bits must be within 0\.\.62"):
        cluster64.run(PROGRAM, {"columns": "bank-1/x"}, output_fractional_bits=63)


# ------------------------------------------------------------------------------------- privacy


def test_no_server_message_carries_a_statistic_in_the_clear(cluster: Cluster) -> None:
    ring = cluster.ring
    base = np.arange(256.0)
    data = np.column_stack([base % 7, np.full(256, 3.0), (base % 5) * 1000, base, -base / 8, base % 2])
    refs = _upload(cluster, data, 3)
    cluster.network.record = True
    result = cluster.run(PROGRAM, {"columns": refs})
    encoded = FixedPoint(32, ring).encode(data).reshape(data.shape)
    e = np.array(ring.to_ints(encoded), dtype=object).reshape(data.shape)
    clear = {int(v) % ring.modulus for v in e.sum(axis=0)}  # raw sums
    clear |= {int(v) % ring.modulus for v in (e.T @ e).reshape(-1)}  # raw Gram entries
    for info in result.outputs:  # every statistic as delivered (at 2^32)
        parts = [
            s.outputs.fetch("model-owner", "model-owner", result.job_id, info.name) for s in cluster.servers
        ]
        values = reconstruct_checked([p.share for p in parts], [f"server-{i}" for i in PARTIES])
        clear |= {v % ring.modulus for v in ring.to_ints(values)}
    clear = {v for v in clear if 1000 < v < ring.modulus - 1000}
    messages = [m for m in cluster.network.sent if m.tag.op >= 1]  # after the agreement round
    assert messages
    words: list[int] = []
    for message in messages:
        if message.words.size % ring.words_per_element == 0:  # arithmetic messages (binary ones: bit streams)
            elements = set(ring.to_ints(ring.from_words(message.words), signed=False))
            assert not elements & clear, (message.sender, message.receiver, message.tag.op)
        assert all(int(w) >= 1 << 20 for w in message.words), (message.sender, message.receiver)
        words += [int(w) for w in message.words]
    top = Counter(w >> 60 for w in words)  # top 4 bits of every 64-bit word: uniform
    expected = len(words) / 16
    assert len(words) > 4096
    assert sum((top.get(b, 0) - expected) ** 2 / expected for b in range(16)) < 56.49  # p = 1e-6


# ------------------------------------------------------------------------------------- the protocol steps


def _three_parties(ring: Ring, program: object) -> list[object]:
    net = InMemoryNetwork()

    async def party(index: int) -> object:
        ctx = PartyContext(net.channels[index], "job-stats", asyncio.get_event_loop().time() + 30, ring=ring)
        await agree_and_setup_keys(ctx, b"\x01" * 32)
        return await program(ctx)  # type: ignore[operator]

    async def main() -> list[object]:
        return list(await asyncio.gather(*(party(p) for p in PARTIES)))

    return asyncio.run(main())


@pytest.mark.parametrize("ring", [RING64, RING128], ids=["ring64", "ring128"])
def test_truncation_in_range_never_fails_and_is_within_one_unit(ring: Ring) -> None:
    rng = np.random.default_rng(21)
    n, k = 4000, ring.bits
    limit = 1 << (k - 2)
    values = [int.from_bytes(rng.bytes(k // 8), "little") % (2 * limit) - limit for _ in range(n)]
    values[:6] = [0, 0, limit - 1, -limit, 1, -1]
    shifts = rng.integers(0, k - 1, size=n).astype(np.int64)
    shifts[:6] = [0, 17, k - 2, k - 2, 0, 3]
    shares = share(ring, ring.from_ints(values))
    results = _three_parties(
        ring, lambda ctx: stats_protocol.truncate_in_range(ctx, shares[ctx.party], shifts)
    )
    out = ring.to_ints(reconstruct_checked(results))  # type: ignore[arg-type]
    for got, value, shift in zip(out, values, shifts.tolist(), strict=True):
        assert abs(got * (1 << shift) - value) < 1 << shift  # |y - x / 2^d| < 1
    assert out[:2] == [0, 0] and out[4] == 1
    errors = [got * (1 << s) - v for got, v, s in zip(out, values, shifts.tolist(), strict=True) if s > 8]
    assert (
        abs(np.mean([e / (1 << s) for e, s in zip(errors, shifts[shifts > 8].tolist(), strict=True)])) < 0.05
    )


def test_truncation_refuses_shifts_out_of_range() -> None:
    shares = share(RING64, RING64.from_ints([5, 6]))
    for shifts in (np.array([0, 63]), np.array([-1, 0]), np.array([1])):
        with pytest.raises(InvalidArgumentError, match="shift"):
            _three_parties(
                RING64, lambda ctx, s=shifts: stats_protocol.truncate_in_range(ctx, shares[ctx.party], s)
            )


@pytest.mark.parametrize("ring", [RING64, RING128], ids=["ring64", "ring128"])
def test_rsqrt_on_the_unit_range_as_the_plans_use_it(ring: Ring) -> None:
    bits = RSQRT_BITS[ring.bits]
    v = np.concatenate([np.linspace(0.25 - 2.0**-21, 1 + 2.0**-21, 513), [0.25, 0.5, 1.0]])
    fixed = FixedPoint(bits, ring)
    encoded = fixed.encode(v)
    shares = share(ring, encoded)
    iterations = stats_protocol.newton_iterations(2.0 ** -CORRELATION_ERROR_BITS[ring.bits] / 64)
    results = _three_parties(
        ring, lambda ctx: stats_protocol.rsqrt_unit(ctx, shares[ctx.party], bits, iterations)
    )
    y = FixedPoint(bits + 1, ring).decode(reconstruct_checked(results))  # type: ignore[arg-type]
    error = np.max(np.abs(y * np.sqrt(fixed.decode(encoded)) - 1))
    assert error < 2.0 ** -(CORRELATION_ERROR_BITS[ring.bits] + 6), error
