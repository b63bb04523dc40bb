"""The metrics endpoint listens on loopback unless an interface is named."""

from __future__ import annotations

import socket
import urllib.request

from mpc_server.observability import ServerMetrics, TransportReadings

READINGS = TransportReadings(
    peer_bytes_sent=dict,
    peer_bytes_received=dict,
    peers_connected=dict,
    client_bytes=lambda: (0, 0),
    uploads=lambda: (0, 0),
    stored_output_bytes=lambda: 0,
    mailbox=lambda: (0, 0),
    running_jobs=lambda: 0,
    asyncio_tasks=lambda: 0,
)


def _other_address() -> str | None:
    """An address of this host that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_a_bare_port_binds_loopback_only() -> None:
    metrics = ServerMetrics(READINGS)
    port = metrics.serve(":0")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        assert "mpc_peers_connected" in text and "client" not in text.replace("mpc_client_bytes", "")
        other = _other_address()
        if other is not None:
            with socket.socket() as outside:
                outside.settimeout(2)
                assert outside.connect_ex((other, port)) != 0, "metrics reachable beyond loopback"
    finally:
        metrics.stop()
