"""Keyed tables from pandas: refused before anything is sent, naming the column and the row."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from mpc_client._tables import table_from_arrays, table_from_frame
from mpc_core.errors import EncodingError, InvalidArgumentError


def test_a_frame_becomes_ids_named_columns_and_floats() -> None:
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "income": [1.5, 2.0, 3.0],
            "accounts": [1, 2, 3],
            "vip": [True, False, True],
        }
    )
    table = table_from_frame(frame, key="customer_id")
    assert table.ids == ["a", "b", "c"] and table.columns == ("income", "accounts", "vip")
    np.testing.assert_array_equal(table.values, [[1.5, 1, 1], [2.0, 2, 0], [3.0, 3, 1]])
    indexed = table_from_frame(frame.set_index("customer_id"), key=None)
    assert indexed.ids == ["a", "b", "c"] and indexed.columns == table.columns


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (
            pd.DataFrame({"id": [1, 2], "x": [1.0, np.nan]}),
            "column x has a missing value (NaN or NA) at row 1",
        ),
        (
            pd.DataFrame({"id": [1, 2], "x": pd.array([1, pd.NA], dtype="Int64")}),
            "column x has a missing value",
        ),
        (pd.DataFrame({"id": [1, 2], "x": [1.0, np.inf]}), "column x has a non-finite value (inf) at row 1"),
        (
            pd.DataFrame({"id": [1, 2], "x": ["a", "b"], "y": [1, 2], "z": ["c", "d"]}),
            r"columns \['x', 'z'\] are not numeric",
        ),
        (pd.DataFrame({"id": [1, 2], "x": [1 + 2j, 3j]}), "not numeric"),
    ],
)
def test_bad_columns_are_refused_by_name_and_row(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(EncodingError) as caught:
        table_from_frame(frame, key="id")
    assert re.search(message, str(caught.value)) or message in str(caught.value), str(caught.value)


def test_bad_keys_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="no key column 'customer'"):
        table_from_frame(pd.DataFrame({"id": [1], "x": [1.0]}), key="customer")
    with pytest.raises(InvalidArgumentError, match="the key at row 1 is nan"):
        table_from_frame(pd.DataFrame({"id": ["a", np.nan], "x": [1.0, 2.0]}), key="id")
    with pytest.raises(InvalidArgumentError, match="no feature columns"):
        table_from_frame(pd.DataFrame({"id": ["a"]}), key="id")
    with pytest.raises(InvalidArgumentError, match="expected a pandas DataFrame"):
        table_from_frame([[1, 2]], key=None)


def test_arrays_with_ids_and_names() -> None:
    table = table_from_arrays(["a", 2], [[1.0, 2.0], [3.0, 4.0]], ["x", "y"])
    assert table.ids == ["a", 2] and table.values.shape == (2, 2)
    with pytest.raises(InvalidArgumentError, match="3 ids for 2 rows"):
        table_from_arrays(["a", "b", "c"], [[1.0], [2.0]], ["x"])
    with pytest.raises(EncodingError, match="complex"):
        table_from_arrays(["a"], [1j], ["x"])
    with pytest.raises(EncodingError, match="column x has a non-finite value"):
        table_from_arrays(["a"], [np.nan], ["x"])
