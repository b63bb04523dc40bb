"""Which rows and columns of each input a program sees: joins of keyed datasets, column selection.

A program's *row roles* (``RoleSpec.rows``, e.g. predict's ``features``; not its
``weights``) hold tables whose rows belong together. Either every dataset in
the row roles is keyed by the same alignment, and the job runs on the inner
join of their tokens (``service.join``), or none is keyed and rows are
matched by position. A job mixing the two, or keyed datasets of different
alignments, is refused. Independently, a job input may select columns by the
names they were uploaded with (``JobInput.columns``).

The planner shows the program each input's *view* (its summary with the
joined row count and the selected columns); the job service applies the same
view to the shares when it loads them (:func:`select`), a local reordering
on every server. Keyed outputs of row-wise programs (``Program.row_outputs``)
carry the join's tokens, so the receiver can tell whose row is whose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from mpc_core.errors import InvalidArgumentError
from mpc_core.sharing import ReplicatedShare
from mpc_server.service.join import Join, Tokens, inner_join
from mpc_server.service.model import DatasetSummary, JobInput, StoredDataset
from mpc_server.service.programs import PlanInputs, Program


@dataclass(frozen=True, eq=False)
class InputView:
    """One job input as its program sees it."""

    rows: npt.NDArray[np.int64] | None = None
    """The dataset's rows in join order; None: all, by position."""
    columns: tuple[int, ...] | None = None
    """The selected columns' positions; None: all."""


@dataclass(frozen=True, eq=False)
class RowLayout:
    """The views of every input of a job (by role, in job order) and the join behind them."""

    views: Mapping[str, tuple[InputView, ...]]
    join: Join | None = None

    @property
    def keyed(self) -> bool:
        """Whether the job runs on a join of keyed datasets."""
        return self.join is not None


def row_roles(program: Program) -> set[str]:
    """The roles whose datasets are rows of the job's table."""
    return {role.name for role in program.roles if getattr(role, "rows", True)}


def keyed_datasets(program: Program, inputs: PlanInputs) -> list[DatasetSummary]:
    """The distinct keyed datasets of the row roles; refuses mixtures (module docstring)."""
    rows = [d for role, datasets in inputs.items() if role in row_roles(program) for d in datasets]
    keyed = [d for d in rows if d.keyed]
    if keyed and len(keyed) != len(rows):
        positional = ", ".join(sorted({str(d.ref) for d in rows if not d.keyed}))
        raise InvalidArgumentError(
            f"the job joins keyed datasets with positional ones ({positional}): upload every table of "
            "the job keyed by the same alignment, or none"
        )
    if len({d.alignment for d in keyed}) > 1:
        raise InvalidArgumentError(
            "the job's keyed datasets come from different alignments: they cannot be joined"
        )
    unique: dict[object, DatasetSummary] = {d.ref: d for d in keyed}
    return list(unique.values())


def column_positions(dataset: DatasetSummary, names: Sequence[str]) -> tuple[int, ...] | None:
    """The positions of the named columns of ``dataset`` (None: no selection)."""
    if not names:
        return None
    known = {name: position for position, name in enumerate(dataset.columns)}
    missing = [name for name in names if name not in known]
    if missing or len(dataset.shape) != 2:
        raise InvalidArgumentError(f"dataset {dataset.ref} has no columns named {missing or list(names)}")
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"a job input names a column of {dataset.ref} twice")
    return tuple(known[name] for name in names)


def layout_of(
    program: Program,
    spec_inputs: Sequence[JobInput],
    inputs: PlanInputs,
    join: Join | None,
    keyed: list[DatasetSummary],
) -> RowLayout:
    """Every input's view, from the job's column selections and the join (if any)."""
    rows_of = {d.ref: rows for d, rows in zip(keyed, join.rows, strict=True)} if join is not None else {}
    selections: dict[str, list[Sequence[str]]] = {role: [] for role in inputs}
    for item in spec_inputs:
        selections[item.role].append(item.columns)
    views = {
        role: tuple(
            InputView(rows_of.get(d.ref) if role in row_roles(program) else None, column_positions(d, names))
            for d, names in zip(datasets, selections[role], strict=True)
        )
        for role, datasets in inputs.items()
    }
    return RowLayout(views, join)


def program_view(inputs: PlanInputs, layout: RowLayout) -> PlanInputs:
    """The inputs' summaries as the program sees them: joined row counts, selected columns."""
    out: dict[str, tuple[DatasetSummary, ...]] = {}
    for role, datasets in inputs.items():
        out[role] = tuple(_shown(d, view) for d, view in zip(datasets, layout.views[role], strict=True))
    return out


def _shown(dataset: DatasetSummary, view: InputView) -> DatasetSummary:
    shape = dataset.shape
    if view.rows is not None:
        shape = (len(view.rows), *shape[1:])
    if view.columns is not None:
        shape = (shape[0], len(view.columns))
    names = dataset.columns if view.columns is None else tuple(dataset.columns[c] for c in view.columns)
    return replace(dataset, shape=shape, columns=names)


def select(dataset: StoredDataset, view: InputView) -> StoredDataset:
    """The dataset's share with the view applied (blocking for large data: run in a worker thread)."""
    if view.rows is None and view.columns is None:
        return dataset
    first, second = dataset.share.first, dataset.share.second
    if len(dataset.shape) == 2:
        first, second = first.reshape(dataset.shape), second.reshape(dataset.shape)
    if view.rows is not None:
        first, second = first[view.rows], second[view.rows]
    if view.columns is not None:
        columns = list(view.columns)
        first, second = first[:, columns], second[:, columns]
    summary = _shown(dataset, view)
    share = ReplicatedShare(np.ascontiguousarray(first).reshape(-1), np.ascontiguousarray(second).reshape(-1))
    return StoredDataset(**{**vars(summary), "share": share})


def join_tokens(datasets: list[Tokens]) -> Join:
    """The join of the keyed datasets' tokens (``service.join.inner_join``)."""
    return inner_join(datasets)
