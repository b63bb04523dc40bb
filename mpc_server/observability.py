"""Structured logs and Prometheus metrics of one server.

Logs: one JSON object per line on stderr, with the time (RFC 3339, UTC),
level, logger, message, the server's identity and party, and the job the
record belongs to (from :data:`~mpc_server.service.jobs.CURRENT_JOB`).
Nothing secret is ever passed to a logger: messages name jobs, datasets,
peers and sizes, never shares, keys or values (``tests/e2e/test_logs.py``
greps every level for them).

Metrics: a per-server ``CollectorRegistry`` (no process-global state)
served on its own port. Counters pushed by the job service
(``mpc_jobs_total``, ``mpc_job_duration_seconds``) and values read at
scrape time from the transport (bytes per peer, peers connected, client
traffic, uploads, stored outputs).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mpc_server.service.jobs import CURRENT_JOB

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats records as single-line JSON objects."""

    def __init__(self, identity: str = "", party: int | None = None) -> None:
        """Stamp every record with the server's ``identity`` and ``party``."""
        super().__init__()
        self._identity = identity
        self._party = party

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line for ``record``."""
        entry: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self._identity:
            entry["server"] = self._identity
        if self._party is not None:
            entry["party"] = self._party
        job_id = getattr(record, "job_id", None) or CURRENT_JOB.get()
        if job_id:
            entry["job_id"] = job_id
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED and k != "job_id"})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, log_format: str, identity: str = "", party: int | None = None) -> None:
    """Route the root logger to stderr as JSON (``json``) or plain text."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(identity, party))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


@dataclass(frozen=True)
class TransportReadings:
    """Callables the metrics read at scrape time."""

    peer_bytes_sent: Callable[[], Mapping[str, int]]
    peer_bytes_received: Callable[[], Mapping[str, int]]
    peers_connected: Callable[[], Mapping[str, bool]]
    client_bytes: Callable[[], tuple[int, int]]
    uploads: Callable[[], tuple[int, int]]
    stored_output_bytes: Callable[[], int]
    mailbox: Callable[[], tuple[int, int]]
    """(jobs with state in the mailbox, bytes buffered)."""
    running_jobs: Callable[[], int]
    asyncio_tasks: Callable[[], int]


class _TransportCollector(Collector):
    def __init__(self, readings: TransportReadings) -> None:
        self._readings = readings

    def collect(self) -> Iterator[Metric]:
        sent = CounterMetricFamily("mpc_peer_bytes_sent", "Bytes sent to each peer", labels=["peer"])
        received = CounterMetricFamily(
            "mpc_peer_bytes_received", "Bytes received from each peer", labels=["peer"]
        )
        for peer, value in self._readings.peer_bytes_sent().items():
            sent.add_metric([peer], value)
        for peer, value in self._readings.peer_bytes_received().items():
            received.add_metric([peer], value)
        connected = self._readings.peers_connected()
        yield sent
        yield received
        yield GaugeMetricFamily(
            "mpc_peers_connected", "Peers with an open link", value=sum(connected.values())
        )
        client_in, client_out = self._readings.client_bytes()
        client = CounterMetricFamily("mpc_client_bytes", "Client API bytes", labels=["direction"])
        client.add_metric(["received"], client_in)
        client.add_metric(["sent"], client_out)
        yield client
        ok, failed = self._readings.uploads()
        uploads = CounterMetricFamily("mpc_uploads", "Dataset uploads by outcome", labels=["status"])
        uploads.add_metric(["ok"], ok)
        uploads.add_metric(["failed"], failed)
        yield uploads
        yield GaugeMetricFamily(
            "mpc_stored_output_bytes",
            "Bytes of output shares kept",
            value=self._readings.stored_output_bytes(),
        )
        open_jobs, buffered = self._readings.mailbox()
        yield GaugeMetricFamily(
            "mpc_mailbox_jobs", "Jobs with messages or waiters in the mailbox", value=open_jobs
        )
        yield GaugeMetricFamily(
            "mpc_mailbox_buffered_bytes", "Peer messages received, not yet read", value=buffered
        )
        yield GaugeMetricFamily("mpc_running_jobs", "Jobs computing now", value=self._readings.running_jobs())
        yield GaugeMetricFamily(
            "mpc_asyncio_tasks", "Tasks on the event loop", value=self._readings.asyncio_tasks()
        )


class ServerMetrics:
    """The server's metrics registry; also the job service's observer."""

    def __init__(self, readings: TransportReadings) -> None:
        """Create the registry with every metric registered."""
        self.registry = CollectorRegistry()
        self._jobs = Counter(
            "mpc_jobs", "Jobs by program and outcome", ["program", "status"], registry=self.registry
        )
        self._durations = Histogram(
            "mpc_job_duration_seconds", "Job duration on this server", ["program"], registry=self.registry
        )
        self.registry.register(_TransportCollector(readings))
        self._stop: Callable[[], None] | None = None

    def job_finished(self, program: str, status: str, seconds: float) -> None:
        """Count a job outcome and its duration."""
        self._jobs.labels(program=program, status=status).inc()
        self._durations.labels(program=program).observe(seconds)

    def serve(self, address: str) -> int:
        """Serve ``/metrics`` over HTTP on ``host:port`` (``:port`` or ``port``: loopback only)."""
        host, _, port = address.rpartition(":")
        server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=self.registry)
        self._stop = server.shutdown
        bound: int = server.server_address[1]
        return bound

    def stop(self) -> None:
        """Stop the HTTP endpoint if it runs."""
        if self._stop is not None:
            self._stop()
            self._stop = None
