"""A TCP proxy that delays every byte by a fixed time in each direction.

The kernel of the test machines has no ``netem``, so the latency test puts
this proxy between two servers instead: one server's cluster file names the
proxy as its peer's address. Bytes are forwarded unchanged (TLS passes
through), in order, each chunk ``delay`` seconds after it arrived; the
round-trip time through the proxy grows by about twice the delay, and
throughput is not throttled.

Run as a script (the fault tests start it inside a network namespace)::

    python delay_proxy.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS

It prints ``ready <port>`` on stdout once it listens and runs until killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

_READ_SIZE = 1 << 16


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` s after it arrived; then half-close."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def forward() -> None:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()

    forwarder = asyncio.create_task(forward())
    try:
        while data := await reader.read(_READ_SIZE):
            queue.put_nowait((time.monotonic() + delay, data))
    except OSError:
        pass
    finally:
        queue.put_nowait((time.monotonic() + delay, b""))
        with contextlib.suppress(OSError):
            await forwarder


async def _handle(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    target: tuple[str, int],
    delay: float,
) -> None:
    try:
        server_reader, server_writer = await asyncio.open_connection(*target)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(
            _pump(client_reader, server_writer, delay), _pump(server_reader, client_writer, delay)
        )
    finally:
        client_writer.close()
        server_writer.close()


async def serve(listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
    """Accept connections on ``listen`` and relay each to ``target`` with ``delay`` s each way."""
    server = await asyncio.start_server(lambda r, w: _handle(r, w, target, delay), *listen)
    port = server.sockets[0].getsockname()[1]
    print(f"ready {port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    """Parse ``LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS`` and serve."""
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    listen_host, listen_port, target_host, target_port, delay_ms = argv
    asyncio.run(
        serve((listen_host, int(listen_port)), (target_host, int(target_port)), float(delay_ms) / 1000)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
