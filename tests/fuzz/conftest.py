"""A real three-server cluster for fuzzing, and raw-gRPC helpers around it.

Every fuzz test talks to the servers over real mutual TLS with a valid
client certificate (``fuzzer``), bypassing the SDK's own checks, so that
the servers see exactly the hostile bytes the test chose. The helpers turn
every call into an :class:`Outcome` (status code, details, response) and
never raise on a refusal, so that tests can compare codes with their oracle.
"""

from __future__ import annotations

import math
import re
import secrets
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_client import Grant, MpcClient
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import client_service_pb2_grpc as pb_grpc
from mpc_proto.v1 import types_pb2
from mpc_server.service.grants import MAX_PINNED_INPUTS, MAX_SUBMITTERS
from mpc_server.service.uploads import UploadLimits

FUZZER = "fuzzer"
CLIENTS = (FUZZER, "model-owner", "bank-1")
PROGRAMS = ("dot", "elementwise.multiply", "linear_regression.predict")

OK = grpc.StatusCode.OK
IA = grpc.StatusCode.INVALID_ARGUMENT
NF = grpc.StatusCode.NOT_FOUND
PD = grpc.StatusCode.PERMISSION_DENIED
AE = grpc.StatusCode.ALREADY_EXISTS
RE = grpc.StatusCode.RESOURCE_EXHAUSTED
FP = grpc.StatusCode.FAILED_PRECONDITION
DOCUMENTED = frozenset({IA, NF, PD, AE, RE, FP})
"""The refusals a client may see for a malformed or forbidden request."""

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""Names, job ids and identities (README, mpc_core.identity): 1-128 chars, alnum first."""

MAX_ELEMENTS = UploadLimits().max_elements
"""The servers' default ``UploadLimits.max_elements``."""
MAX_GRANTS = UploadLimits().max_grants
"""The servers' default ``UploadLimits.max_grants`` (grants per dataset)."""
GRANT_ID_BYTES = 16
SCOPES = (
    types_pb2.GRANT_SCOPE_UNSPECIFIED,  # read as own-data
    types_pb2.GRANT_SCOPE_OWN_DATA,
    types_pb2.GRANT_SCOPE_PINNED,
    types_pb2.GRANT_SCOPE_ANY_INPUTS,
)
RING_BITS = 128
ELEMENT_BYTES = 16  # bytes of a Z_2^128 element on the wire
MAX_DIMENSIONS = 8

CALL_TIMEOUT = 10.0


@dataclass(frozen=True)
class Outcome:
    """What one server answered."""

    server: int
    code: grpc.StatusCode
    details: str = ""
    response: Any = None
    responses: tuple[Any, ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return f"server-{self.server}: {self.code.name} {self.details[:300]!r}"


def _failed(server: int, error: grpc.RpcError) -> Outcome:
    assert isinstance(error, grpc.Call)
    metadata = tuple((k, v) for k, v in (error.trailing_metadata() or ()) if isinstance(v, str))
    return Outcome(server, error.code(), error.details() or "", metadata=metadata)


class Wire:
    """Raw gRPC access to the three servers of a :class:`LocalCluster`."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self._channels: dict[tuple[int, str], grpc.Channel] = {}
        self._pool = ThreadPoolExecutor(max_workers=6, thread_name_prefix="fuzz-wire")
        self._sdk: MpcClient | None = None

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        if self._sdk is not None:
            self._sdk.close()
        self._pool.shutdown(wait=False)

    def channel(self, server: int, identity: str = FUZZER) -> grpc.Channel:
        key = (server, identity)
        if key not in self._channels:
            certs = self.cluster.cert_dir
            creds = grpc.ssl_channel_credentials(
                (certs / "ca.pem").read_bytes(),
                (certs / f"{identity}.key").read_bytes(),
                (certs / f"{identity}.pem").read_bytes(),
            )
            self._channels[key] = grpc.secure_channel(
                self.cluster.addresses[server],
                creds,
                options=[("grpc.ssl_target_name_override", f"server-{server}")],
            )
        return self._channels[key]

    def stub(self, server: int, identity: str = FUZZER) -> pb_grpc.ClientServiceStub:
        return pb_grpc.ClientServiceStub(self.channel(server, identity))

    # -- typed calls -------------------------------------------------------

    def upload(
        self,
        server: int,
        requests: Iterable[pb.UploadDatasetRequest],
        *,
        identity: str = FUZZER,
        timeout: float = CALL_TIMEOUT,
    ) -> Outcome:
        try:
            reply = self.stub(server, identity).UploadDataset(iter(list(requests)), timeout=timeout)
        except grpc.RpcError as exc:
            return _failed(server, exc)
        return Outcome(server, OK, response=reply)

    def upload_all(
        self,
        streams: Sequence[Sequence[pb.UploadDatasetRequest]],
        *,
        identity: str = FUZZER,
        timeout: float = CALL_TIMEOUT,
    ) -> list[Outcome]:
        """Upload ``streams[i]`` to server ``i``, all three at once."""
        futures = [
            self._pool.submit(self.upload, i, stream, identity=identity, timeout=timeout)
            for i, stream in enumerate(streams)
        ]
        return [f.result() for f in futures]

    def run_job(self, server: int, request: pb.RunJobRequest, *, identity: str = FUZZER) -> Outcome:
        try:
            reply = self.stub(server, identity).RunJob(request, timeout=CALL_TIMEOUT)
        except grpc.RpcError as exc:
            return _failed(server, exc)
        return Outcome(server, OK, response=reply)

    def run_job_all(
        self,
        requests: pb.RunJobRequest | Sequence[pb.RunJobRequest],
        *,
        identity: str = FUZZER,
    ) -> list[Outcome]:
        """Submit a job to the three servers at once (one request each, or the same)."""
        per_server = [requests] * 3 if isinstance(requests, pb.RunJobRequest) else list(requests)
        futures = [
            self._pool.submit(self.run_job, i, request, identity=identity)
            for i, request in enumerate(per_server)
        ]
        return [f.result() for f in futures]

    def fetch(self, server: int, request: pb.FetchOutputRequest, *, identity: str = FUZZER) -> Outcome:
        try:
            responses = tuple(self.stub(server, identity).FetchOutput(request, timeout=CALL_TIMEOUT))
        except grpc.RpcError as exc:
            return _failed(server, exc)
        return Outcome(server, OK, responses=responses)

    def info(self, server: int, *, identity: str = FUZZER) -> Outcome:
        try:
            reply = self.stub(server, identity).GetServerInfo(pb.GetServerInfoRequest(), timeout=CALL_TIMEOUT)
        except grpc.RpcError as exc:
            return _failed(server, exc)
        return Outcome(server, OK, response=reply)

    # -- raw bytes -----------------------------------------------------------

    def raw_unary(self, server: int, method: str, data: bytes) -> Outcome:
        call = self.channel(server).unary_unary(
            f"/mpc.v1.ClientService/{method}", request_serializer=None, response_deserializer=None
        )
        try:
            reply = call(data, timeout=CALL_TIMEOUT)
        except grpc.RpcError as exc:
            return _failed(server, exc)
        return Outcome(server, OK, response=reply)

    def raw_unary_all(self, method: str, data: bytes) -> list[Outcome]:
        """The same raw request to the three servers at once."""
        futures = [self._pool.submit(self.raw_unary, server, method, data) for server in range(3)]
        return [f.result() for f in futures]

    def raw_unary_stream(self, server: int, method: str, data: bytes) -> Outcome:
        call = self.channel(server).unary_stream(
            f"/mpc.v1.ClientService/{method}", request_serializer=None, response_deserializer=None
        )
        try:
            responses = tuple(call(data, timeout=CALL_TIMEOUT))
        except grpc.RpcError as exc:
            return _failed(server, exc)
        return Outcome(server, OK, responses=responses)

    def raw_stream_unary(self, server: int, method: str, messages: Sequence[bytes]) -> Outcome:
        call = self.channel(server).stream_unary(
            f"/mpc.v1.ClientService/{method}", request_serializer=None, response_deserializer=None
        )
        try:
            reply = call(iter(list(messages)), timeout=CALL_TIMEOUT)
        except grpc.RpcError as exc:
            return _failed(server, exc)
        return Outcome(server, OK, response=reply)

    # -- observation ---------------------------------------------------------

    def metrics(self, server: int) -> str:
        url = f"http://127.0.0.1:{self.cluster.metrics_ports[server]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            text: str = reply.read().decode()
        return text

    def rss(self, server: int) -> int:
        """Resident set size of server ``server``'s process, in bytes."""
        process = self.cluster.processes[server]
        assert process is not None
        with open(f"/proc/{process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS line")

    @property
    def sdk(self) -> MpcClient:
        if self._sdk is None:
            self._sdk = self.cluster.client(FUZZER, timeout=30)
        return self._sdk

    def assert_healthy(self) -> None:
        """All three processes alive and READY, and a small job still computes correctly."""
        for index, process in enumerate(self.cluster.processes):
            assert process is not None and process.poll() is None, f"server-{index} died"
        for server in range(3):
            outcome = self.info(server)
            assert outcome.code is OK, str(outcome)
            assert outcome.response.readiness == pb.READINESS_STATE_READY, f"server-{server} not ready"
            assert all(peer.connected for peer in outcome.response.peers)
        values = np.array([1.5, -2.0, 3.25])
        name = f"health-{secrets.token_hex(4)}"
        self.sdk.upload(name, values, grants=[Grant(FUZZER, "dot")])
        _, result = self.sdk.run_and_fetch("dot", {"x": name, "y": name})
        assert float(result) == pytest.approx(float(values @ values))


def codes(outcomes: Iterable[Outcome]) -> list[grpc.StatusCode]:
    return [o.code for o in outcomes]


def describe(outcomes: Iterable[Outcome]) -> str:
    return "; ".join(str(o) for o in outcomes)


def metric_values(text: str, name: str) -> dict[str, float]:
    """Every sample of metric ``name``: label string -> value."""
    found = {}
    for match in re.finditer(r"^" + re.escape(name) + r"(\{[^\n]*\})? (\S+)$", text, re.MULTILINE):
        found[match.group(1) or ""] = float(match.group(2))
    return found


# -- the upload oracle: the contract of UploadDataset, independent of the server code --

TAKEN = "taken"
"""A dataset the fuzzer owns before any upload fuzzing starts."""


def header_faults(header: pb.UploadHeader, server: int | None = None) -> set[grpc.StatusCode]:
    """Every refusal the header alone deserves at ``server`` (empty: the header is fine)."""
    faults: set[grpc.StatusCode] = set()
    if (server == 1 and header.second_seed) or (server == 2 and header.first_seed):
        faults.add(IA)  # share component 2 must travel in full: no upload is all seeds
    if NAME.fullmatch(header.name) is None:
        faults.add(IA)
    shape = list(header.shape)
    if len(shape) > MAX_DIMENSIONS or any(d == 0 for d in shape):
        faults.add(IA)
    if any(d > MAX_ELEMENTS for d in shape) or math.prod(shape) > MAX_ELEMENTS:
        faults.add(RE)
    if header.ring != types_pb2.RING_Z2_128:  # the fuzz cluster computes in the default ring
        faults.add(IA)
    if not header.HasField("fractional_bits") or header.fractional_bits > RING_BITS - 2:
        faults.add(IA)
    if not header.HasField("magnitude_bits") or header.magnitude_bits > RING_BITS - 1:
        faults.add(IA)
    if len(header.upload_id) != 16:
        faults.add(IA)
    if any(len(seed) not in (0, 16) for seed in (header.first_seed, header.second_seed)):
        faults.add(IA)
    return faults | grants_faults(header.name, header.grants)


def grant_faults(dataset: str, grant: types_pb2.Grant) -> set[grpc.StatusCode]:
    """The refusals one grant on the fuzzer's dataset ``dataset`` deserves (all INVALID_ARGUMENT).

    A grant names its id (16 bytes), a receiver and a program the servers
    offer; a pinned grant, and only a pinned grant, lists the job's inputs,
    every one naming a valid dataset, with a version of 16 bytes or none,
    the granting dataset itself among them; submitters are valid names; the
    lists are bounded; an expiry is not negative.
    """
    pins = list(grant.inputs)
    wrong = (
        len(grant.grant_id) != GRANT_ID_BYTES,
        grant.scope not in SCOPES,
        NAME.fullmatch(grant.receiver) is None,
        grant.program not in PROGRAMS,
        any(NAME.fullmatch(s) is None for s in grant.submitters),
        len(grant.submitters) > MAX_SUBMITTERS or len(pins) > MAX_PINNED_INPUTS,
        (grant.scope == types_pb2.GRANT_SCOPE_PINNED) != bool(pins),
        any(not p.HasField("dataset") for p in pins),
        any(NAME.fullmatch(part) is None for p in pins for part in (p.dataset.owner, p.dataset.name)),
        any(len(p.upload_id) not in (0, 16) for p in pins),
        bool(pins) and (FUZZER, dataset) not in {(p.dataset.owner, p.dataset.name) for p in pins},
        grant.expires_at < 0,
    )
    return {IA} if any(wrong) else set()


def grants_faults(dataset: str, grants: Sequence[types_pb2.Grant]) -> set[grpc.StatusCode]:
    """The refusals the grants of an upload deserve: each one's, too many, two with one id."""
    faults: set[grpc.StatusCode] = set()
    if len(grants) > MAX_GRANTS:
        faults.add(RE)
    if len({g.grant_id for g in grants}) != len(grants):
        faults.add(IA)
    for grant in grants:
        faults |= grant_faults(dataset, grant)
    return faults


def stream_faults(header: pb.UploadHeader, rest: Sequence[pb.UploadDatasetRequest]) -> set[grpc.StatusCode]:
    """Refusals the chunks after a good header deserve (all INVALID_ARGUMENT)."""
    count = math.prod(header.shape)
    sent = (not header.first_seed, not header.second_seed)
    received = count if not any(sent) else 0
    for request in rest:
        if request.WhichOneof("item") != "chunk":
            return {IA}  # a second header (or an empty message)
        chunk = request.chunk
        parts = (chunk.first, chunk.second)
        if not any(sent) or any(data for data, is_sent in zip(parts, sent, strict=True) if not is_sent):
            return {IA}
        lengths = {len(data) for data, is_sent in zip(parts, sent, strict=True) if is_sent}
        if chunk.offset != received or len(lengths) != 1:
            return {IA}
        (length,) = lengths
        size = length // ELEMENT_BYTES
        if length % ELEMENT_BYTES or size == 0 or received + size > count:
            return {IA}
        received += size
    return set() if received == count else {IA}


def upload_faults(
    requests: Sequence[pb.UploadDatasetRequest], server: int | None = None
) -> set[grpc.StatusCode]:
    """Every refusal an upload stream deserves at ``server``; empty when it is well-formed."""
    if not requests or requests[0].WhichOneof("item") != "header":
        return {IA}
    header = requests[0].header
    faults = header_faults(header, server)
    if faults:
        return faults
    faults = stream_faults(header, requests[1:])
    if header.name == TAKEN and not header.overwrite:
        faults.add(AE)
    return faults


@pytest.fixture(scope="session")
def fuzz_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One real cluster (three processes, mutual TLS) for all fuzz tests."""
    local = LocalCluster(tmp_path_factory.mktemp("fuzz-cluster"), clients=CLIENTS, metrics=True)
    local.start()
    yield local
    local.stop()


@pytest.fixture(scope="session")
def wire(fuzz_cluster: LocalCluster) -> Iterator[Wire]:
    helper = Wire(fuzz_cluster)
    yield helper
    helper.close()


@pytest.fixture(scope="session")
def healthy(wire: Wire) -> Callable[[], None]:
    """Call at the end of a fuzz test: the cluster survived it."""
    return wire.assert_healthy
