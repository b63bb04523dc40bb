"""Progress bars for long transfers: on a terminal only, unless the caller says otherwise.

``progress`` arguments of the SDK take ``None`` (the default: a bar on stderr
when it is a terminal, nothing otherwise), ``False`` (never), ``True``
(always) or a callable told how many more units are done.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeAlias

ProgressArg: TypeAlias = bool | Callable[[int], None] | None
"""What callers pass: None (auto), False, True, or their own callback."""


@contextmanager
def progress_bar(option: ProgressArg, total: int, what: str, unit: str) -> Iterator[Callable[[int], None]]:
    """A callback advancing a bar of ``total`` ``unit``s (or doing nothing when off)."""
    if callable(option):
        yield option
        return
    enabled = sys.stderr.isatty() if option is None else option
    if not enabled:
        yield lambda done: None
        return
    from tqdm import tqdm  # noqa: PLC0415 - only when a bar is shown

    with tqdm(total=total, desc=what, unit=unit, unit_scale=True, file=sys.stderr, leave=False) as bar:

        def advance(done: int) -> None:
            bar.update(done)

        yield advance


def counting(requests: Iterator[bytes], advance: Callable[[int], None]) -> Iterator[bytes]:
    """Pass ``requests`` through, telling ``advance`` the bytes of each."""
    for request in requests:
        advance(len(request))
        yield request
