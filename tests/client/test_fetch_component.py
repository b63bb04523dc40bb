"""A streamed output component: large chunks stay views of the messages, small ones are copied."""

from __future__ import annotations

import numpy as np
import pytest

from mpc_client._fetch import MIN_VIEW_BYTES, _Component
from mpc_core.ring import RING64, RING128, Ring


@pytest.fixture(params=[RING64, RING128], ids=["ring64", "ring128"])
def ring(request: pytest.FixtureRequest) -> Ring:
    ring_: Ring = request.param
    return ring_


def _values(ring: Ring, count: int) -> np.ndarray:
    return ring.from_ints([v - count // 2 for v in range(count)])


def _fed(ring: Ring, values: np.ndarray, sizes: list[int]) -> _Component:
    component = _Component(ring, values.size)
    start = 0
    for size in sizes:
        component.add(values[start : start + size], last=start + size == values.size)
        start += size
    assert start == values.size
    return component


def _whole(ring: Ring, component: _Component) -> bytes:
    if component.whole is not None:
        return ring.wire_bytes(component.whole).tobytes()
    return b"".join(ring.wire_bytes(piece).tobytes() for piece in component.pieces)


def test_large_chunks_are_kept_as_views(ring: Ring) -> None:
    chunk = MIN_VIEW_BYTES // ring.element_bytes
    values = _values(ring, 2 * chunk + 5)
    component = _fed(ring, values, [chunk, chunk, 5])  # the last chunk may be short
    assert component.whole is None and len(component.pieces) == 3
    assert all(np.shares_memory(piece, values) for piece in component.pieces)
    assert _whole(ring, component) == ring.wire_bytes(values).tobytes()


@pytest.mark.parametrize("layout", ["tiny-from-the-start", "tiny-after-large"])
def test_a_stream_of_small_chunks_is_copied_into_one_array(ring: Ring, layout: str) -> None:
    chunk = MIN_VIEW_BYTES // ring.element_bytes
    values = _values(ring, chunk + 40)
    sizes = [1] * (chunk + 40) if layout == "tiny-from-the-start" else [chunk] + [1] * 40
    component = _fed(ring, values, sizes)
    assert component.whole is not None and component.pieces == []
    assert not np.shares_memory(component.whole, values)
    assert _whole(ring, component) == ring.wire_bytes(values).tobytes()
