"""``mpc server``: run one of the three servers as its own process."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from mpc_server.app import serve
from mpc_server.config import server_config
from mpc_server.observability import configure_logging
from mpc_server.service.chunks import return_freed_memory
from mpc_server.service.jobs import JobLimits
from mpc_server.service.output_store import OutputRetention
from mpc_server.service.uploads import UploadLimits


def register(commands: Any) -> None:
    """Add the ``server`` subcommand."""
    parser = commands.add_parser(
        "server",
        help="run one MPC server (one party of the cluster)",
        description=(
            "Run one of the cluster's three servers. It listens for clients and peers "
            "(mutual TLS only), connects to its two peers, and reports READY once both "
            "are connected and verified. Stops gracefully on SIGTERM or Ctrl-C."
        ),
    )
    parser.add_argument(
        "--cluster", type=Path, required=True, help="cluster file (TOML) naming the three servers and the CA"
    )
    parser.add_argument(
        "--identity", required=True, help="which server of the cluster file this is, e.g. server-0"
    )
    parser.add_argument("--cert", type=Path, help="server certificate (default: <CA dir>/<identity>.pem)")
    parser.add_argument("--key", type=Path, help="server private key (default: <CA dir>/<identity>.key)")
    parser.add_argument(
        "--listen", help="address to bind, e.g. 0.0.0.0:7100 (default: the cluster file's address)"
    )
    parser.add_argument(
        "--max-job-seconds", type=float, help="upper bound on any job's duration in seconds (default 300)"
    )
    parser.add_argument(
        "--jobs-per-client",
        type=int,
        default=JobLimits().max_jobs_per_client,
        help="jobs one client may have running on this server at once; more is RESOURCE_EXHAUSTED "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--job-memory-bytes",
        type=int,
        default=JobLimits().memory_bytes,
        help="memory one job may hold at its peak, estimated from its plan before it runs; larger row "
        "inputs are streamed in chunks where the program allows, other jobs over it are refused with "
        "RESOURCE_EXHAUSTED (default %(default)s)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where shares and outputs are stored (default: data/<identity> beside the cluster file)",
    )
    defaults = OutputRetention()
    parser.add_argument(
        "--client-output-bytes",
        type=int,
        default=defaults.max_bytes_per_client,
        help="quota of output bytes kept until fetched for the jobs one client submits "
        "(default %(default)s); a job over it is refused with RESOURCE_EXHAUSTED",
    )
    parser.add_argument(
        "--client-outputs",
        type=int,
        default=defaults.max_outputs_per_client,
        help="quota of outputs kept until fetched for the jobs one client submits (default %(default)s)",
    )
    parser.add_argument(
        "--output-bytes",
        type=int,
        default=defaults.max_bytes,
        help="all kept outputs together, in bytes (default %(default)s)",
    )
    uploads = UploadLimits()
    parser.add_argument(
        "--upload-idle-seconds",
        type=float,
        default=uploads.idle_seconds,
        help="end an upload that sends nothing for this long (default %(default)s)",
    )
    parser.add_argument(
        "--upload-memory-bytes",
        type=int,
        default=uploads.max_inflight_bytes,
        help="memory all uploads in progress may take together; more is RESOURCE_EXHAUSTED "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--client-datasets",
        type=int,
        default=uploads.max_datasets_per_client,
        help="quota of datasets one client may keep on this server, uploads in progress included "
        "(default %(default)s); an upload over it is refused with RESOURCE_EXHAUSTED",
    )
    parser.add_argument(
        "--client-dataset-bytes",
        type=int,
        default=uploads.max_bytes_per_client,
        help="quota of bytes one client's datasets may take at rest on this server, counted as shares "
        "stored in full (2 x elements x 16 bytes in Z_2^128) whether or not they came as seeds "
        "(default %(default)s); an upload over it is refused with RESOURCE_EXHAUSTED",
    )
    parser.add_argument(
        "--metrics-address",
        help="serve Prometheus metrics on [host]:port; :9100 binds loopback only, 0.0.0.0:9100 every "
        "interface (default: off). The metrics name programs and counts, never clients or data",
    )
    parser.add_argument(
        "--log-format", choices=["json", "text"], default="json", help="log lines as JSON (default) or text"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Start the server and serve until stopped."""
    config = server_config(
        args.cluster,
        args.identity,
        cert=args.cert,
        key=args.key,
        listen=args.listen,
        max_job_seconds=args.max_job_seconds,
        jobs_per_client=args.jobs_per_client,
        job_memory_bytes=args.job_memory_bytes,
        metrics_address=args.metrics_address,
        data_dir=args.data_dir,
        uploads=UploadLimits(
            idle_seconds=args.upload_idle_seconds,
            max_inflight_bytes=args.upload_memory_bytes,
            max_datasets_per_client=args.client_datasets,
            max_bytes_per_client=args.client_dataset_bytes,
        ),
        outputs=OutputRetention(
            max_bytes=args.output_bytes,
            max_bytes_per_client=args.client_output_bytes,
            max_outputs_per_client=args.client_outputs,
        ),
    )
    configure_logging(args.log_level, args.log_format, config.identity, config.endpoint.party)
    return_freed_memory()  # so that jobs stay within their memory budget (service.chunks)
    asyncio.run(serve(config))
    return 0
