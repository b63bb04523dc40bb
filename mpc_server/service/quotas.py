"""Per-client quotas on datasets at rest: how many, and how many bytes.

A dataset's size is measured as its shares take in full, both components
(``2 * elements * element bytes``), whether this server stores a component
as a seed or not: the measure is then the same on the three servers, which
therefore reach the same verdict on an upload, and it bounds what a job
over the dataset expands in memory. Uploads in progress and prepared ones
not yet settled count too (``service.commit``), so that concurrent uploads
cannot exceed a quota together; a dataset an upload replaces
(``overwrite``) is not counted twice. Deleting a dataset frees its part.
An upload over a quota is refused, before anything is allocated, with
:class:`ResourceLimitError` (RESOURCE_EXHAUSTED) naming the quota.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mpc_core.errors import ResourceLimitError
from mpc_server.service.model import DatasetSummary


def dataset_bytes(shape: Sequence[int], ring_bits: int) -> int:
    """The quotas' measure of a dataset of ``shape`` in Z_2^ring_bits."""
    return 2 * math.prod(shape) * (ring_bits // 8)


@dataclass(frozen=True)
class DatasetQuota:
    """The limits one client's datasets must stay within on one server."""

    max_datasets: int
    max_bytes: int
    server: str

    def check(
        self,
        owner: str,
        name: str,
        nbytes: int,
        stored: Iterable[DatasetSummary],
        reserved: Iterable[tuple[str, int]],
    ) -> None:
        """Refuse an upload of ``name`` (``nbytes``) by ``owner`` that would exceed a quota.

        ``stored`` are the owner's datasets, ``reserved`` the names and sizes
        of its uploads in progress or not yet settled.

        Raises:
            ResourceLimitError: naming the quota, its value and the usage.
        """
        names: set[str] = {name}
        used = nbytes
        for summary in stored:
            names.add(summary.ref.name)
            if summary.ref.name != name:  # a replaced version goes when this one comes
                used += dataset_bytes(summary.shape, summary.ring_bits)
        for other, size in reserved:
            names.add(other)
            used += size
        if len(names) > self.max_datasets:
            raise ResourceLimitError(
                f"dataset quota exceeded: client {owner} may keep at most {self.max_datasets} datasets on "
                f"{self.server} (uploads in progress included); delete one before uploading {name}"
            )
        if used > self.max_bytes:
            raise ResourceLimitError(
                f"quota of bytes at rest exceeded: the datasets of client {owner} would take {used} bytes "
                f"on {self.server} (as shares stored in full, uploads in progress included), more than its "
                f"quota of {self.max_bytes} bytes; delete datasets before uploading {name}"
            )
