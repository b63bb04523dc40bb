"""Configuration of one server process, read once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from mpc_core.cluster import ClusterConfig, ServerEndpoint, parse_cluster
from mpc_core.errors import ConfigError
from mpc_server.service.jobs import JobLimits
from mpc_server.service.output_store import OutputRetention
from mpc_server.service.uploads import UploadLimits


@dataclass(frozen=True)
class ServerConfig:
    """Everything one server needs to start."""

    cluster: ClusterConfig
    identity: str
    cert: Path
    key: Path
    listen: str
    data_dir: Path
    connect_timeout: float = 5.0
    jobs: JobLimits = field(default_factory=JobLimits)
    uploads: UploadLimits = field(default_factory=UploadLimits)
    outputs: OutputRetention = field(default_factory=OutputRetention)
    metrics_address: str | None = None
    """``host:port`` for the Prometheus endpoint; None disables it."""

    @property
    def endpoint(self) -> ServerEndpoint:
        """This server's entry in the cluster file."""
        return self.cluster.by_identity(self.identity)


def load_cluster(path: Path) -> ClusterConfig:
    """Read and parse a cluster file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read cluster file {path}: {exc.strerror}") from None
    return parse_cluster(text, path.resolve().parent)


def server_config(
    cluster_file: Path,
    identity: str,
    *,
    cert: Path | None = None,
    key: Path | None = None,
    listen: str | None = None,
    max_job_seconds: float | None = None,
    jobs_per_client: int | None = None,
    job_memory_bytes: int | None = None,
    metrics_address: str | None = None,
    data_dir: Path | None = None,
    outputs: OutputRetention | None = None,
    uploads: UploadLimits | None = None,
) -> ServerConfig:
    """Build a :class:`ServerConfig`.

    Certificate paths default to the CA's directory, the data directory to
    ``data/<identity>`` next to the cluster file.
    """
    cluster = load_cluster(cluster_file)
    endpoint = cluster.by_identity(identity)
    cert_dir = cluster.ca_path.parent
    jobs = JobLimits() if max_job_seconds is None else JobLimits(max_seconds=max_job_seconds)
    if jobs_per_client is not None:
        jobs = replace(jobs, max_jobs_per_client=jobs_per_client)
    if job_memory_bytes is not None:
        jobs = replace(jobs, memory_bytes=job_memory_bytes)
    if jobs.memory_bytes <= 0:
        raise ConfigError("the per-job memory budget must be positive")
    if jobs.max_seconds <= 0:
        raise ConfigError("the maximum job duration must be positive")
    if jobs.max_jobs_per_client <= 0:
        raise ConfigError("the number of concurrent jobs per client must be positive")
    outputs = outputs or OutputRetention()
    if min(outputs.max_bytes, outputs.max_bytes_per_client, outputs.max_outputs_per_client) <= 0:
        raise ConfigError("output quotas must be positive")
    if uploads is not None and (uploads.idle_seconds <= 0 or uploads.max_inflight_bytes <= 0):
        raise ConfigError("the upload idle time and memory budget must be positive")
    if uploads is not None and min(uploads.max_datasets_per_client, uploads.max_bytes_per_client) <= 0:
        raise ConfigError("dataset quotas (datasets and bytes at rest per client) must be positive")
    return ServerConfig(
        cluster=cluster,
        identity=identity,
        cert=cert or cert_dir / f"{identity}.pem",
        key=key or cert_dir / f"{identity}.key",
        listen=listen or endpoint.address,
        data_dir=data_dir or cluster_file.resolve().parent / "data" / identity,
        jobs=jobs,
        outputs=outputs,
        uploads=uploads or UploadLimits(),
        metrics_address=metrics_address,
    )
