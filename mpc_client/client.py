"""The client SDK: share and upload, run jobs, fetch and reconstruct outputs.

Everything secret happens on the caller's machine: :meth:`MpcClient.upload`
encodes the values in fixed point, splits them into three random components
with the OS CSPRNG and sends each server only its pair ``(x_i, x_{i+1})``;
:meth:`MpcClient.fetch` collects the output pairs, checks that the two
copies of every component agree (naming the servers that disagree) and
only then reconstructs. Bad input is refused before anything is sent.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import numpy as np
import numpy.typing as npt

from mpc_client import _fetch, _jobs, _upload
from mpc_client._align import AlignmentCalls
from mpc_client._catalog import CatalogCalls, grant_to_proto
from mpc_client._jobs import InputSpec, KeepSpec
from mpc_client._keyed import KeyedCalls, KeyMap, default_key_dir
from mpc_client._progress import ProgressArg, counting, progress_bar
from mpc_client._transport import ClientCredentials, ServerConnection, connect_all, fan_out
from mpc_client.types import DatasetRef, Grant, JobResult, ParamValue, ServerInfo
from mpc_core.certificates import check_certificate
from mpc_core.cluster import ClusterConfig, parse_cluster
from mpc_core.errors import (
    ConfigError,
    InvalidArgumentError,
    ProtocolTimeoutError,
)
from mpc_core.fixed_point import FixedPoint
from mpc_core.identity import Role, validate_name
from mpc_core.sharing import share, split_seeded
from mpc_proto.v1 import client_service_pb2 as pb

DEFAULT_TIMEOUT = 60.0

GrantSpec = Grant | tuple[str, str]
"""A :class:`Grant`, or ``(receiver, program)`` for the safe default grant."""


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None


class MpcClient(CatalogCalls, AlignmentCalls, KeyedCalls):
    """A connection to the three servers of a cluster under one identity."""

    def __init__(
        self,
        cluster: ClusterConfig,
        credentials: ClientCredentials,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        key_dir: str | Path | None = None,
    ) -> None:
        """Use :meth:`connect` unless you already hold the parsed parts (``key_dir``: see upload_table)."""
        info = check_certificate(
            credentials.cert_pem, credentials.key_pem, credentials.ca_pem, "client certificate"
        )
        if info.principal.role is not Role.CLIENT:
            raise ConfigError(f"{info.principal.uri} is not a client certificate")
        self.identity = info.principal.name
        self.cluster = cluster
        self.timeout = timeout
        self.ring = cluster.ring
        self.fixed_point = FixedPoint(cluster.fractional_bits, cluster.ring)
        self._connections = connect_all(cluster, credentials)
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="mpc-client")
        self.key_map = KeyMap(Path(key_dir) if key_dir else default_key_dir(self.identity))

    @classmethod
    def connect(
        cls,
        cluster_file: str | Path,
        cert: str | Path,
        key: str | Path,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        key_dir: str | Path | None = None,
    ) -> MpcClient:
        """Connect with a cluster file and this identity's certificate and key."""
        path = Path(cluster_file)
        try:
            cluster = parse_cluster(path.read_text(), path.resolve().parent)
        except OSError as exc:
            raise ConfigError(f"cannot read cluster file {path}: {exc.strerror}") from None
        credentials = ClientCredentials(
            _read(Path(cert), "certificate"),
            _read(Path(key), "private key"),
            _read(cluster.ca_path, "CA certificate"),
        )
        return cls(cluster, credentials, timeout=timeout, key_dir=key_dir)

    def __repr__(self) -> str:
        """Identity and servers, nothing secret."""
        return f"MpcClient(identity={self.identity!r}, servers={list(self.cluster.identities)})"

    def __enter__(self) -> MpcClient:
        """Use as a context manager that closes the connections."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the connections."""
        self.close()

    def close(self) -> None:
        """Close the channels to the servers."""
        for connection in self._connections:
            connection.channel.close()
        self._pool.shutdown(wait=False)

    def _deadline(self, timeout: float | None) -> float:
        chosen = self.timeout if timeout is None else timeout
        if chosen <= 0:
            raise InvalidArgumentError("timeout must be positive")
        return chosen

    def upload(
        self,
        name: str,
        values: npt.ArrayLike,
        *,
        grants: Iterable[GrantSpec] = (),
        overwrite: bool = False,
        compress: bool = True,
        fractional_bits: int | None = None,
        bound: float | None = None,
        progress: ProgressArg = None,
        timeout: float | None = None,
    ) -> DatasetRef:
        """Secret-share ``values`` and upload one share pair to each server.

        ``grants`` says who may receive outputs of which programs from jobs
        that use this dataset, and how (:class:`Grant`): ``Grant(receiver,
        program)`` allows only jobs whose other inputs are this owner's own
        datasets; ``Grant.pinned(...)`` one exact job with pinned inputs, for
        example the model owner's weights of one version. Values are checked
        (finite, within the fixed-point range, non-empty) before anything is
        sent. Returns the dataset's reference with its new version, which
        other owners pin in their grants. With
        ``compress`` (the default) two of the three share components travel
        as 16-byte PRG seeds (see ``protos/mpc/v1/client_service.proto``).

        The values are encoded with ``fractional_bits`` (default: the
        cluster's). The servers learn a public bound on the values, the power
        of two just above ``max |v|`` (or above ``bound`` if given, which must
        be at least the largest value): programs use it to refuse jobs whose
        results could leave the ring, before computing anything.

        Raises:
            EncodingError: a value is NaN, infinite, out of range or above ``bound``.
            MpcError: a server refused the upload (the message names it).
        """
        if type(values).__module__.startswith("pandas"):
            raise InvalidArgumentError(
                "pandas objects keep their keys and column names only through upload_table(name, frame, ...)"
            )
        options = (grants, overwrite, compress, fractional_bits, bound, timeout)
        return self._send(name, values, *options, progress=progress)

    def _send(  # noqa: PLR0917 - upload's options, passed through
        self,
        name: str,
        values: npt.ArrayLike,
        grants: Iterable[GrantSpec],
        overwrite: bool,
        compress: bool,
        fractional_bits: int | None,
        bound: float | None,
        timeout: float | None,
        keyed: tuple[str, tuple[str, ...], bytes] | None = None,
        progress: ProgressArg = None,
    ) -> DatasetRef:
        """Upload ``values``; ``keyed`` is (alignment, column names, row tokens) for a keyed table."""
        validate_name(name, "dataset name")
        grant_list = [g if isinstance(g, Grant) else Grant(*g) for g in grants]
        array = np.asarray(values, dtype=np.float64) if not isinstance(values, np.ndarray) else values
        if array.size == 0:
            raise InvalidArgumentError("cannot upload an empty array")
        fixed_point = self.fixed_point if fractional_bits is None else FixedPoint(fractional_bits, self.ring)
        encoded, magnitude = fixed_point.encode_bounded(array)
        if bound is not None:
            magnitude = _upload.declared_magnitude(fixed_point, bound, float(np.abs(array).max()))
        header = pb.UploadHeader(
            name=name,
            shape=list(array.shape),
            fractional_bits=fixed_point.fractional_bits,
            grants=[grant_to_proto(g, self.identity, name) for g in grant_list],
            upload_id=secrets.token_bytes(16),
            overwrite=overwrite,
            ring=_fetch.RING_ENUM[self.ring.bits],
            magnitude_bits=magnitude,
        )
        alignment, columns, tokens = keyed or ("", (), b"")
        header.alignment, header.columns[:] = alignment, list(columns)
        deadline = self._deadline(timeout)
        if compress:
            split = split_seeded(self.ring, encoded)
            streams = [
                _upload.seeded_requests(header, split, c.endpoint.party, tokens) for c in self._connections
            ]
        else:
            shares = share(self.ring, encoded)
            streams = [
                _upload.plain_requests(header, shares[c.endpoint.party], tokens) for c in self._connections
            ]
        by_server = dict(zip((c.name for c in self._connections), streams, strict=True))
        total = (2 if compress else 6) * encoded.nbytes + 3 * len(tokens)

        with progress_bar(progress, total, f"uploading {name}", "B") as advance:

            def send(connection: ServerConnection) -> pb.UploadDatasetResponse:
                requests = counting(by_server[connection.name], advance)
                response: pb.UploadDatasetResponse = connection.upload_raw(requests, timeout=deadline)
                return response

            replies = fan_out(self._connections, send, self._pool)
        _upload.check_stored(self._connections, replies, header.upload_id, int(array.size))
        return DatasetRef(self.identity, name, header.upload_id.hex())

    def delete(self, name: str, *, timeout: float | None = None) -> None:
        """Delete one of this client's datasets from all three servers.

        Raises:
            NotFoundError: a server holds no dataset of that name (the
                others still delete theirs).
        """
        request = pb.DeleteDatasetRequest(name=validate_name(name, "dataset name"))
        deadline = self._deadline(timeout)
        fan_out(self._connections, lambda c: c.stub.DeleteDataset(request, timeout=deadline), self._pool)

    def run(
        self,
        program: str,
        inputs: Mapping[str, InputSpec],
        *,
        receiver: str | None = None,
        job_id: str | None = None,
        parameters: Mapping[str, ParamValue] | None = None,
        keep_as: Mapping[str, KeepSpec] | None = None,
        output_fractional_bits: int | None = None,
        timeout: float | None = None,
    ) -> JobResult:
        """Run ``program`` on the named inputs; its outputs are kept for ``receiver``.

        ``inputs`` maps each role to a dataset or a list of datasets (given
        as :class:`DatasetRef`, ``"owner/name"``, or a bare name owned by
        this client), e.g. ``{"features": ["bank-1/x", "bank-2/z"],
        "weights": "w", "intercept": "c"}``. ``receiver`` defaults to this
        client. ``parameters`` are the program's public parameters, e.g.
        ``{"l2": 0.1}`` (``server_info()`` lists each program's). ``keep_as``
        keeps outputs on the servers as new datasets of the receiver instead
        of delivering them, e.g. ``{"weights": "model-w"}`` or
        ``{"weights": Keep("model-w", grants=[...])}``: nobody sees them, and
        later jobs use them under their grants (only the receiver may submit
        such a job). ``output_fractional_bits`` asks for the outputs at that
        scale (default: the program's natural scale, which is exact; a lower
        scale is reached by probabilistic truncation, which the servers
        refuse when it could fail with probability above 2^-40). Returns once
        all three servers have finished.
        """
        spec = _jobs.job_spec(
            self.identity,
            program,
            inputs,
            receiver=receiver,
            job_id=job_id,
            output_fractional_bits=output_fractional_bits,
            parameters=parameters,
            keep=keep_as,
        )
        result, _ = self._submit(spec, timeout=timeout, return_output=False)
        return result

    def run_and_fetch(
        self,
        program: str,
        inputs: Mapping[str, InputSpec],
        *,
        job_id: str | None = None,
        parameters: Mapping[str, ParamValue] | None = None,
        keep: bool = False,
        output_fractional_bits: int | None = None,
        timeout: float | None = None,
    ) -> tuple[JobResult, npt.NDArray[np.float64]]:
        """Run a job for this client and reconstruct its (first) output.

        Small outputs (up to 65536 elements) of single-output programs come
        back with the job itself, saving a round trip; others are fetched as
        by :meth:`fetch`. Either way the servers drop their copies once the
        output is returned, unless ``keep`` (then it can be fetched again
        until it expires). The checks are the same either way.
        """
        spec = _jobs.job_spec(
            self.identity,
            program,
            inputs,
            receiver=None,
            job_id=job_id,
            output_fractional_bits=output_fractional_bits,
            parameters=parameters,
            keep=None,
        )
        result, parts = self._submit(spec, timeout=timeout, return_output=True, release=not keep)
        if parts is None:
            return result, self.fetch(result, release=not keep, timeout=timeout)
        return result, _fetch.reconstruct_output(parts)

    def _submit(
        self, spec: pb.JobSpec, *, timeout: float | None, return_output: bool, release: bool = False
    ) -> tuple[JobResult, list[_fetch.OutputPart] | None]:
        request = pb.RunJobRequest(job=spec, return_output=return_output, release=release)
        deadline = self._deadline(timeout)

        def submit(connection: ServerConnection) -> pb.RunJobResponse:
            response: pb.RunJobResponse = connection.stub.RunJob(request, timeout=deadline)
            return response

        responses = fan_out(self._connections, submit, self._pool)
        result = _jobs.job_result(self._connections, responses, spec, self.identity)
        if not all(r.HasField("output_share") for r in responses):
            return result, None
        parts = [
            _fetch.part_from_share(c.name, r.output, r.output_share)
            for c, r in zip(self._connections, responses, strict=True)
        ]
        return result, parts

    def fetch(
        self,
        job: str | JobResult,
        *,
        output: str = "",
        submitter: str | None = None,
        release: bool = False,
        timeout: float | None = None,
    ) -> npt.NDArray[np.float64]:
        """Fetch one output's shares, check them and reconstruct the values.

        ``output`` names it (default: the job's first delivered output). With
        ``release`` the servers delete the output once they have sent it
        all; otherwise they keep it until it expires (an hour by default).

        Raises:
            OutputIntegrityError: two servers' copies of a share component
                (or of the output's shape) differ; names both servers.
            NotFoundError: no such output for this client: never computed,
                released, expired, or this client is not its receiver (one
                answer for all, so nobody learns of others' jobs).
        """
        job_id = job.job_id if isinstance(job, JobResult) else job
        by = submitter or (job.submitter if isinstance(job, JobResult) and job.submitter else self.identity)
        if not output and isinstance(job, JobResult) and job.outputs:
            output = _jobs.delivered(job)[0]
        request = _fetch.FetchRequest(job_id, by, output, release, self._deadline(timeout))
        values, _ = _fetch.fetch_output(self._connections, self._pool, request)
        return values

    def fetch_all(
        self, job: JobResult, *, release: bool = False, timeout: float | None = None
    ) -> dict[str, npt.NDArray[np.float64]]:
        """Every output the job delivered, by name (each checked as by :meth:`fetch`)."""
        return {
            name: self.fetch(job, output=name, release=release, timeout=timeout)
            for name in _jobs.delivered(job)
        }

    def server_info(self, *, timeout: float | None = None) -> list[ServerInfo]:
        """Ask each server about itself and its peer links."""
        deadline = self._deadline(timeout)
        return fan_out(self._connections, lambda c: _fetch.server_info(c, deadline), self._pool)

    def wait_until_ready(self, timeout: float = 30.0, poll: float = 0.1) -> list[ServerInfo]:
        """Wait until all three servers report both peers connected."""
        end = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < end:
            try:
                infos = self.server_info(timeout=max(0.1, min(2.0, end - time.monotonic())))
                if all(info.ready for info in infos):
                    return infos
            except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
                last = exc
            time.sleep(poll)
        raise ProtocolTimeoutError(
            f"cluster not ready within {timeout:.0f} s" + (f": {last}" if last else "")
        )
