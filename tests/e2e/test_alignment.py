"""Private record alignment end to end: two banks' overlapping customers, shuffled, with string ids.

bank-1 holds 10,000 customers, bank-2 8,000, 6,000 in common; each uploads a
pandas DataFrame keyed by its own customer ids, in its own order. The model
owner's pinned model predicts on the join: the receiver gets exactly the
plaintext inner join's predictions, for the common customers only, keyed by
its own ids when it is a bank and by token when it holds no keys.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_client import Grant, InvalidArgumentError, Keep

pytest.importorskip(
    "mpc_core.oprf", reason="alignment needs libsodium (Debian: libsodium23)", exc_type=ImportError
)
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
PREDICT = "linear_regression.predict"
COMMON, ONLY_1, ONLY_2 = 6000, 4000, 2000
W = np.array([0.25, -0.5, 1.5])
C = 100.0


@pytest.fixture(scope="module")
def keyed_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("keyed"), clients=("model-owner", "bank-1", "bank-2"))
    local.start()
    yield local
    local.stop()


@pytest.fixture
def key_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MPC_KEY_DIR", str(tmp_path / "keys"))  # each identity's key map under it
    return tmp_path / "keys"


def _customers() -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [f"CUST-{secrets.token_hex(5).upper()}" for _ in range(COMMON + ONLY_1 + ONLY_2)]
    values = np.random.default_rng(7).normal(size=(len(ids), 3)) * [20_000.0, 5_000.0, 3.0] + [
        60_000.0,
        8_000.0,
        2.0,
    ]
    frame = pd.DataFrame(values, columns=["income", "debt", "products"])
    frame.insert(0, "customer_id", ids)
    bank_1 = frame.iloc[: COMMON + ONLY_1][["customer_id", "income"]].sample(frac=1, random_state=1)
    bank_2 = pd.concat([frame.iloc[:COMMON], frame.iloc[COMMON + ONLY_1 :]])[
        ["customer_id", "debt", "products"]
    ]
    return bank_1, bank_2.sample(frac=1, random_state=2).set_index("customer_id")


def _plaintext(bank_1: pd.DataFrame, bank_2: pd.DataFrame) -> pd.Series:
    joined = bank_1.set_index("customer_id").join(bank_2, how="inner")
    return joined[["income", "debt", "products"]].to_numpy() @ W + C


def test_keyed_predictions_are_the_plaintext_inner_join(keyed_cluster: LocalCluster, key_dirs: Path) -> None:
    bank_1, bank_2 = _customers()
    tag = secrets.token_hex(3)
    with keyed_cluster.client("model-owner") as owner:
        alignment = owner.open_alignment(f"q4-{tag}", {"bank-1": len(bank_1), "bank-2": len(bank_2)})
    job = {"features": [f"bank-1/in-{tag}", f"bank-2/debt-{tag}"], "weights": f"model-owner/w-{tag}",
           "intercept": f"model-owner/c-{tag}"}  # fmt: skip
    grants = [Grant.pinned(receiver, PREDICT, job) for receiver in ("model-owner", "bank-1")]
    with keyed_cluster.client("model-owner") as owner:
        owner.upload(f"w-{tag}", W, grants=grants)
        owner.upload(f"c-{tag}", C, grants=grants)
    with keyed_cluster.client("bank-1") as bank:
        ref = bank.upload_table(f"in-{tag}", bank_1, key="customer_id", alignment=alignment, grants=grants)
        (info,) = [d for d in bank.datasets().items if d.ref.name == ref.name]
        assert info.shape == (len(bank_1),)
    with keyed_cluster.client("bank-2") as bank:
        bank.upload_table(f"debt-{tag}", bank_2, alignment=alignment, grants=grants)  # keyed by the index
    expected = _plaintext(bank_1, bank_2)

    with keyed_cluster.client("model-owner") as owner:  # holds no keys: gets tokens and the count
        result = owner.run(PREDICT, job)
        by_token = owner.fetch_table(result)
    assert len(by_token) == COMMON and by_token.index.name == "token"
    assert sorted(by_token.to_numpy()) == pytest.approx(sorted(expected), abs=1e-6)

    with keyed_cluster.client("bank-1") as bank:  # a bank gets its own customers' predictions
        result = bank.run(PREDICT, job)
        mine = bank.fetch_table(result)
    assert mine.index.name == "id" and len(mine) == COMMON
    joined = bank_1.set_index("customer_id").join(bank_2, how="inner")
    truth = pd.Series(joined[["income", "debt", "products"]].to_numpy() @ W + C, index=joined.index)
    np.testing.assert_allclose(mine.loc[truth.index].to_numpy(), truth.to_numpy(), atol=1e-6)
    assert set(mine.index) <= set(bank_1["customer_id"])  # only the common customers, by bank-1's ids
    assert set(mine.index).isdisjoint(set(bank_1["customer_id"]) - set(bank_2.index))


def test_keyed_and_positional_inputs_do_not_mix(keyed_cluster: LocalCluster, key_dirs: Path) -> None:
    tag = secrets.token_hex(3)
    with keyed_cluster.client("model-owner") as owner:
        alignment = owner.open_alignment(f"mix-{tag}", {"bank-1": 10})
        owner.upload(f"w-{tag}", [1.0, 1.0], grants=[Grant.read_access("model-owner", PREDICT)])
    with keyed_cluster.client("bank-1") as bank:
        frame = pd.DataFrame({"id": [f"c{i}" for i in range(5)], "x": np.arange(5.0)})
        bank.upload_table(f"k-{tag}", frame, key="id", alignment=alignment,
                          grants=[Grant.read_access("model-owner", PREDICT)])  # fmt: skip
        bank.upload(f"p-{tag}", np.arange(5.0), grants=[Grant.read_access("model-owner", PREDICT)])
    with (
        keyed_cluster.client("model-owner") as owner,
        pytest.raises(InvalidArgumentError, match="keyed datasets with positional"),
    ):
        owner.run(PREDICT, {"features": [f"bank-1/k-{tag}", f"bank-1/p-{tag}"], "weights": f"w-{tag}"})


def test_ids_leave_no_trace_on_the_servers(keyed_cluster: LocalCluster, key_dirs: Path) -> None:
    """No id appears in any server's files or logs; the key map stays on the owner's machine."""
    tag = secrets.token_hex(3)
    marker = f"SECRET-ID-{secrets.token_hex(8)}"
    with keyed_cluster.client("model-owner") as owner:
        alignment = owner.open_alignment(f"trace-{tag}", {"bank-1": 3})
    with keyed_cluster.client("bank-1") as bank:
        frame = pd.DataFrame({"customer_id": [marker, marker + "-2", marker + "-3"], "x": [1.0, 2.0, 3.0]})
        bank.upload_table(f"t-{tag}", frame, key="customer_id", alignment=alignment)
    for path in keyed_cluster.directory.rglob("*"):
        if path.is_file() and "certs" not in path.parts:
            assert marker.encode() not in path.read_bytes(), f"{path} holds a customer id"
    maps = list((key_dirs / "bank-1").glob("*.jsonl"))
    assert maps and marker in maps[0].read_text() and oct(maps[0].stat().st_mode & 0o777) == "0o600"


def test_a_job_selects_columns_by_name(keyed_cluster: LocalCluster, key_dirs: Path) -> None:
    from mpc_client import Select

    tag = secrets.token_hex(3)
    ids = [f"c{i}" for i in range(6)]
    with keyed_cluster.client("model-owner") as owner:
        alignment = owner.open_alignment(f"sel-{tag}", {"bank-1": 6})
        owner.upload(f"w-{tag}", [2.0, -1.0], grants=[Grant.read_access("model-owner", PREDICT)])
    frame = pd.DataFrame({"id": ids, "a": np.arange(6.0), "b": np.arange(6.0) * 10, "c": np.ones(6)})
    with keyed_cluster.client("bank-1") as bank:
        bank.upload_table(f"t-{tag}", frame, key="id", alignment=alignment,
                          grants=[Grant.read_access("model-owner", PREDICT)])  # fmt: skip
        (info,) = [d for d in bank.datasets().items if d.ref.name == f"t-{tag}"]
        assert info.columns == ("a", "b", "c") and info.alignment == alignment
    with keyed_cluster.client("model-owner") as owner:
        result = owner.run(
            PREDICT, {"features": [Select(f"bank-1/t-{tag}", "c", "a")], "weights": f"w-{tag}"}
        )
        got = owner.fetch_table(result)
        with pytest.raises(InvalidArgumentError, match="has no columns named"):
            owner.run(PREDICT, {"features": [Select(f"bank-1/t-{tag}", "z")], "weights": f"w-{tag}"})
    assert sorted(got.to_numpy()) == pytest.approx(sorted(2.0 * frame["c"] - frame["a"]))


def test_a_pinned_grant_allows_only_the_columns_it_names(keyed_cluster: LocalCluster, key_dirs: Path) -> None:
    """Weights (1, 0) on column 'a' were consented to; the same job on columns ('b', 'a') is refused."""
    from mpc_client import PermissionDeniedError, Select

    tag = secrets.token_hex(3)
    with keyed_cluster.client("model-owner") as owner:
        alignment = owner.open_alignment(f"pin-{tag}", {"bank-1": 4})
    job = {"features": [Select(f"bank-1/t-{tag}", "a")], "weights": f"model-owner/w-{tag}"}
    grant = Grant.pinned("model-owner", PREDICT, job)
    with keyed_cluster.client("model-owner") as owner:
        owner.upload(f"w-{tag}", [1.0], grants=[grant])
    frame = pd.DataFrame({"id": ["w", "x", "y", "z"], "a": [1.0, 2.0, 3.0, 4.0], "b": [9.0, 8.0, 7.0, 6.0]})
    with keyed_cluster.client("bank-1") as bank:
        bank.upload_table(f"t-{tag}", frame, key="id", alignment=alignment, grants=[grant])
        (info,) = [d for d in bank.datasets().items if d.ref.name == f"t-{tag}"]
        assert info.grants[0].grant.inputs[0] == ("features", "self#a")
    with keyed_cluster.client("model-owner") as owner:
        result = owner.run(PREDICT, job)
        assert sorted(owner.fetch_table(result).to_numpy()) == pytest.approx([1.0, 2.0, 3.0, 4.0])
        with pytest.raises(PermissionDeniedError, match="pinned to"):
            owner.run(PREDICT, {"features": [Select(f"bank-1/t-{tag}", "b")], "weights": f"w-{tag}"})
    with keyed_cluster.client("bank-1") as bank:
        (record,) = [r for r in bank.audit(f"t-{tag}").items if r.job_id == result.job_id]
        assert record.inputs[0].columns == ("a",)


def test_a_kept_keyed_output_stays_keyed_and_joins_again(keyed_cluster: LocalCluster, key_dirs: Path) -> None:
    bank_1, bank_2 = _customers()
    tag = secrets.token_hex(3)
    with keyed_cluster.client("model-owner") as owner:
        alignment = owner.open_alignment(f"kk-{tag}", {"bank-1": len(bank_1), "bank-2": len(bank_2)})
    job = {"features": [f"bank-1/in-{tag}", f"bank-2/debt-{tag}"], "weights": f"model-owner/w-{tag}",
           "intercept": f"model-owner/c-{tag}"}  # fmt: skip
    grants = [Grant.pinned("bank-1", PREDICT, job)]
    with keyed_cluster.client("model-owner") as owner:
        owner.upload(f"w-{tag}", W, grants=grants)
        owner.upload(f"c-{tag}", C, grants=grants)
    with keyed_cluster.client("bank-2") as bank:
        bank.upload_table(f"debt-{tag}", bank_2, alignment=alignment, grants=grants)
    own = Grant("bank-1", PREDICT)  # with bank-1's own data only
    with keyed_cluster.client("bank-1") as bank:
        bank.upload_table(f"in-{tag}", bank_1, key="customer_id", alignment=alignment, grants=[*grants, own])
        bank.upload(f"w2-{tag}", [1.0, 0.001], grants=[own])
        bank.run(PREDICT, job, keep_as={"predictions": Keep(f"pred-{tag}", grants=(own,))})
        (kept,) = [d for d in bank.datasets().items if d.ref.name == f"pred-{tag}"]
        assert kept.alignment and kept.shape == (COMMON,)  # keyed by the join's tokens
        again = {"features": [f"pred-{tag}", f"in-{tag}"], "weights": f"w2-{tag}"}  # joined with its rows
        mine = bank.fetch_table(bank.run(PREDICT, again))
    joined = bank_1.set_index("customer_id").join(bank_2, how="inner")
    scores = joined[["income", "debt", "products"]].to_numpy() @ W + C
    truth = pd.Series(scores + 0.001 * joined["income"].to_numpy(), index=joined.index)
    assert len(mine) == COMMON
    np.testing.assert_allclose(mine.loc[truth.index].to_numpy(), truth.to_numpy(), atol=1e-3)
