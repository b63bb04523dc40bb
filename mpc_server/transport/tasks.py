"""Stopping background tasks without losing the caller's own cancellation.

The usual idiom, ``task.cancel()`` then ``with suppress(CancelledError):
await task``, has a trap: if the *caller* is cancelled while it waits, that
cancellation is swallowed too, and the caller carries on as if nothing had
happened. A peer link's reconnect loop did exactly that when SIGTERM arrived
just as its stream ended: it kept reconnecting, and shutdown waited for it
forever. :func:`cancel_and_wait` waits with :func:`asyncio.wait`, which never
raises the tasks' errors but lets the caller's cancellation through.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

_log = logging.getLogger(__name__)


async def cancel_and_wait(
    tasks: Collection[asyncio.Task[Any]], timeout: float | None = None
) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait until they end, or ``timeout`` seconds.

    Returns the tasks still running at the timeout (empty if all ended).
    Errors the tasks ended with are logged, not raised: they are being
    stopped. The caller's own cancellation propagates as usual.
    """
    for task in tasks:
        task.cancel()
    if not tasks:
        return set()
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            _log.debug("task %s ended with %r while being stopped", task.get_name(), task.exception())
    return pending
