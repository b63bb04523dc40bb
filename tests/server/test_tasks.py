"""Stopping background tasks never swallows the stopper's own cancellation."""

from __future__ import annotations

import asyncio

from mpc_server.transport.tasks import cancel_and_wait


async def _slow_to_stop(stopping: asyncio.Event) -> None:
    """A task that needs a moment to clean up after being cancelled."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        stopping.set()
        await asyncio.sleep(0.05)
        raise


def test_a_stopper_cancelled_while_it_waits_stays_cancelled() -> None:
    # The shutdown hang: a peer link cancelled while it waited for its writer
    # task carried on reconnecting, and the server never exited.
    async def main() -> bool:
        stopping = asyncio.Event()
        child = asyncio.create_task(_slow_to_stop(stopping))
        await asyncio.sleep(0)

        async def stopper() -> str:
            await cancel_and_wait([child])
            return "carried on"

        outer = asyncio.create_task(stopper())
        await stopping.wait()  # the stopper now waits for the child
        outer.cancel()
        try:
            await outer
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(main())


def test_tasks_end_and_their_errors_are_not_raised() -> None:
    async def failing() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            raise RuntimeError("while stopping")

    async def main() -> tuple[set[asyncio.Task[None]], list[bool]]:
        tasks = [asyncio.create_task(failing()), asyncio.create_task(asyncio.sleep(3600))]
        await asyncio.sleep(0)
        pending = await cancel_and_wait(tasks, timeout=5)
        return pending, [task.done() for task in tasks]

    pending, done = asyncio.run(main())
    assert pending == set() and done == [True, True]


def test_tasks_that_do_not_stop_are_returned_at_the_timeout() -> None:
    async def main() -> bool:
        release = asyncio.Event()

        async def stubborn() -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                await release.wait()  # ignores the cancellation until released

        task = asyncio.create_task(stubborn(), name="stubborn")
        await asyncio.sleep(0)
        pending = await cancel_and_wait([task], timeout=0.05)
        release.set()
        await task
        return {t.get_name() for t in pending} == {"stubborn"}

    assert asyncio.run(main())
