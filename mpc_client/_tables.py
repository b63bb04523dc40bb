"""pandas in: a keyed table checked and turned into ids, column names and a float64 matrix.

Everything is refused before anything is sent, naming what is wrong: a
missing key, keys that are not strings or integers, non-numeric columns
(each named), complex values, and NaN, ``pd.NA`` or infinities (column and
row named). Booleans and integers are numbers (True is 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mpc_core.errors import EncodingError, InvalidArgumentError
from mpc_core.identity import validate_name

MAX_COLUMNS = 4096


@dataclass(frozen=True, eq=False)
class Table:
    """A keyed table: one id per row, named numeric columns, the values as a float64 matrix."""

    ids: list[str | int]
    columns: tuple[str, ...]
    values: npt.NDArray[np.float64]
    """Shape ``(rows, len(columns))``."""


def _pandas() -> Any:
    import pandas as pd  # noqa: PLC0415 - pandas is imported only by the table calls

    return pd


def table_from_frame(frame: Any, key: str | None) -> Table:
    """Check a DataFrame: ``key`` names the id column (None: the index); every other column is a feature."""
    pd = _pandas()
    if not isinstance(frame, pd.DataFrame):
        raise InvalidArgumentError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    if key is None:
        keys, features = frame.index, frame
    elif key in frame.columns:
        keys, features = frame[key], frame.drop(columns=[key])
    else:
        raise InvalidArgumentError(
            f"the DataFrame has no key column {key!r} (columns: {list(frame.columns)})"
        )
    columns = tuple(_column_name(c) for c in features.columns)
    _check_columns(features, columns)
    values = np.empty((len(features), len(columns)), dtype=np.float64)
    for position, name in enumerate(columns):
        values[:, position] = _numeric(features.iloc[:, position], name)
    return Table(_ids(list(keys)), columns, values)


def table_from_arrays(ids: Sequence[str | int], values: npt.ArrayLike, columns: Sequence[str]) -> Table:
    """Check ids, a (rows,) or (rows, columns) array and its column names."""
    array = np.asarray(values)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2 or array.shape[1] != len(columns):
        raise InvalidArgumentError(f"values of shape {array.shape} do not fit {len(columns)} named columns")
    if len(ids) != array.shape[0]:
        raise InvalidArgumentError(f"{len(ids)} ids for {array.shape[0]} rows")
    names = tuple(_column_name(c) for c in columns)
    if np.iscomplexobj(array):
        raise EncodingError("complex values cannot be uploaded")
    floats = np.asarray(array, dtype=np.float64)
    for position, name in enumerate(names):
        _finite(floats[:, position], name)
    return Table(_ids(list(ids)), names, floats)


def _column_name(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"column names must be strings, got {value!r}")
    return validate_name(value, "column name")


def _check_columns(features: Any, columns: tuple[str, ...]) -> None:
    if not columns:
        raise InvalidArgumentError("the table has no feature columns besides its key")
    if len(columns) > MAX_COLUMNS or len(set(columns)) != len(columns):
        raise InvalidArgumentError(f"at most {MAX_COLUMNS} columns, each name once")
    pd = _pandas()
    bad = [name for name, dtype in zip(columns, features.dtypes, strict=True)
           if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))
           or pd.api.types.is_complex_dtype(dtype)]  # fmt: skip
    if bad:
        raise EncodingError(f"columns {bad} are not numeric (only the key may be): convert or drop them")


def _numeric(series: Any, name: str) -> npt.NDArray[np.float64]:
    missing = series.isna().to_numpy()
    if missing.any():
        row = series.index[int(np.argmax(missing))]
        raise EncodingError(f"column {name} has a missing value (NaN or NA) at row {row!r}")
    floats: npt.NDArray[np.float64] = series.to_numpy(dtype=np.float64)
    _finite(floats, name, series.index)
    return floats


def _finite(values: npt.NDArray[np.float64], name: str, index: Any = None) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        position = int(np.argmax(bad))
        row = position if index is None else index[position]
        raise EncodingError(f"column {name} has a non-finite value ({values[position]}) at row {row!r}")


def _ids(keys: list[Any]) -> list[str | int]:
    out: list[str | int] = []
    for row, value in enumerate(keys):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (str, int, np.integer)):
            raise InvalidArgumentError(f"the key at row {row} is {value!r}: keys are strings or integers")
        out.append(value if isinstance(value, str) else int(value))
    return out
