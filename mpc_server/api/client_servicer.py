"""The client API (``mpc.v1.ClientService``) of one server.

Thin by design: each method authenticates the caller, decodes the request
(``api.convert``), calls the service layer and encodes the answer. Errors
become status codes in ``transport.status``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import grpc

from mpc_core import tags
from mpc_core.errors import InvalidArgumentError, ProtocolTimeoutError
from mpc_core.identity import Principal, validate_name
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import client_service_pb2_grpc as pb_grpc
from mpc_server.api import convert
from mpc_server.service.audit import JobRecord
from mpc_server.service.catalog import Catalog
from mpc_server.service.jobs import JobService
from mpc_server.service.model import DatasetRef
from mpc_server.service.outputs import OutputService
from mpc_server.service.upload_session import ShareChunk, TokenChunk
from mpc_server.service.uploads import UploadService
from mpc_server.transport.status import streaming_errors, unary_errors

_Context = grpc.aio.ServicerContext[Any, Any]
DEFAULT_JOB_TIMEOUT = 60.0
"""Seconds a job may run when the client set no deadline."""
INLINE_OUTPUT_ELEMENTS = 1 << 16
"""Largest output returned inside a RunJob response (2 x 1 MiB in Z_2^128)."""


@dataclass
class ClientTraffic:
    """Bytes of serialized client-API messages, counted by this server, in all and per client."""

    received: int = 0
    sent: int = 0
    uploads: int = 0
    failed_uploads: int = 0
    by_client: dict[str, list[int]] = field(default_factory=dict)
    """Per identity: [bytes received from it, bytes sent to it]."""

    def count(self, identity: str, received: int = 0, sent: int = 0) -> None:
        """Add one client's message bytes."""
        self.received += received
        self.sent += sent
        mine = self.by_client.setdefault(identity, [0, 0])
        mine[0] += received
        mine[1] += sent


def _timeout(context: _Context) -> float:
    """The caller's remaining deadline, less a margin (default without one).

    Servers finish (or fail) a little before the caller gives up, so the
    caller hears why rather than only seeing its own deadline expire.
    """
    remaining = context.time_remaining()
    if remaining is None:
        return DEFAULT_JOB_TIMEOUT
    return max(0.1, remaining - min(1.0, remaining / 10))


class ClientServicer(pb_grpc.ClientServiceServicer):
    """Serves the client API of one server."""

    def __init__(
        self,
        uploads: UploadService,
        jobs: JobService,
        outputs: OutputService,
        catalog: Catalog,
        *,
        server_info: Callable[[], pb.GetServerInfoResponse],
        authenticate: Callable[[_Context], Principal],
    ) -> None:
        """Serve from the given services; ``authenticate`` names the caller."""
        self._uploads = uploads
        self._jobs = jobs
        self._outputs = outputs
        self._catalog = catalog
        self._server_info = server_info
        self._authenticate = authenticate
        self.traffic = ClientTraffic()

    @unary_errors
    async def UploadDataset(  # type: ignore[override]  # raw bytes: see transport.registration
        self, request_iterator: AsyncIterator[bytes], context: _Context
    ) -> pb.UploadDatasetResponse:
        """Receive a header and then chunks of shares; check and commit at the end.

        Requests arrive as bytes (``UploadDatasetRequest``) and are decoded
        by ``api.convert`` without copying the shares.
        """
        try:
            owner = self._authenticate(context).name
            response = await self._upload(owner, request_iterator, _timeout(context))
        except Exception:
            self.traffic.failed_uploads += 1
            raise
        self.traffic.uploads += 1
        return response

    async def _upload(
        self, owner: str, request_iterator: AsyncIterator[bytes], timeout: float
    ) -> pb.UploadDatasetResponse:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            raise InvalidArgumentError("an upload must start with a header")
        self.traffic.count(owner, received=len(first))
        header = convert.upload_header_from_bytes(first)
        chunks = self._chunks(owner, request_iterator)
        dataset = await self._uploads.receive(owner, header, chunks, timeout)
        return pb.UploadDatasetResponse(
            dataset=convert.dataset_ref_to_proto(dataset.ref),
            element_count=dataset.share.size,
            upload_id=dataset.upload_id,
        )

    async def _chunks(
        self, owner: str, requests: AsyncIterator[bytes]
    ) -> AsyncIterator[ShareChunk | TokenChunk]:
        iterator, idle = aiter(requests), self._uploads.limits.idle_seconds
        while True:
            try:
                request = await asyncio.wait_for(anext(iterator), idle)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise ProtocolTimeoutError(f"the upload sent nothing for {idle:g} s and was ended") from None
            self.traffic.count(owner, received=len(request))
            yield convert.upload_chunk_from_bytes(request)

    @unary_errors
    async def DeleteDataset(
        self, request: pb.DeleteDatasetRequest, context: _Context
    ) -> pb.DeleteDatasetResponse:
        """Delete one of the caller's datasets."""
        owner = self._authenticate(context).name
        await self._uploads.delete(DatasetRef(owner, request.name))
        return pb.DeleteDatasetResponse()

    @unary_errors
    async def RunJob(self, request: pb.RunJobRequest, context: _Context) -> pb.RunJobResponse:
        """Run the job and report its output's shape and the traffic."""
        submitter = self._authenticate(context).name
        spec = convert.job_spec_from_proto(request.job)
        timeout = _timeout(context)
        self.traffic.count(submitter, received=request.ByteSize())
        inline = request.return_output and submitter == spec.receiver
        result = await self._jobs.run(submitter, spec, timeout, fetched_now=inline)
        response = convert.run_job_response(result)
        if inline and len(result.delivered) == 1 and not result.delivered[0].keyed:
            output = self._outputs.fetch(submitter, submitter, spec.job_id)
            if output.share.size <= INLINE_OUTPUT_ELEMENTS:
                response.output_share.CopyFrom(convert.whole_share_chunk(output.share))
                if request.release:
                    self._jobs.drop_output_soon(submitter, spec.job_id)
        self.traffic.count(submitter, sent=response.ByteSize())
        return response

    @streaming_errors
    async def FetchOutput(  # type: ignore[override]  # raw bytes: see transport.registration
        self, request: pb.FetchOutputRequest, context: _Context
    ) -> AsyncIterator[bytes]:
        """Stream this server's output share to the job's receiver.

        Responses are encoded ``FetchOutputResponse`` bytes (``api.convert``).
        """
        requester = self._authenticate(context).name
        job_id = validate_name(request.job_id, "job id")
        submitter = validate_name(request.submitter, "submitter") if request.submitter else requester
        if len(request.second_mac_key) not in (0, tags.MAC_KEY_BYTES):
            raise InvalidArgumentError(f"second_mac_key must be {tags.MAC_KEY_BYTES} bytes")
        name = validate_name(request.output, "output name") if request.output else ""
        output = self._outputs.fetch(requester, submitter, job_id, name)
        checked = request.second_mac_key or request.second_as_digest
        digest = await convert.digest_of(output.share.second, request.second_mac_key) if checked else None
        header = pb.FetchOutputResponse(header=convert.output_info_to_proto(output.info))
        tokens = await asyncio.to_thread(self._outputs.row_tokens, output) if output.info.keyed else b""
        last = [pb.FetchOutputResponse(second_digest=digest).SerializeToString()] if digest else []
        chunks = convert.output_responses(output.share, with_second=digest is None)
        rows = convert.token_responses(tokens)
        for response in chain([header.SerializeToString()], rows, chunks, last):
            self.traffic.count(requester, sent=len(response))
            self._outputs.activity()
            yield response
        if request.release:
            self._outputs.release(requester, submitter, job_id, output.info.name)

    @unary_errors
    async def GetServerInfo(
        self, request: pb.GetServerInfoRequest, context: _Context
    ) -> pb.GetServerInfoResponse:
        """Describe this server and its peer links, with the caller's own traffic only."""
        caller = self._authenticate(context).name
        info = self._server_info()
        received, sent = self.traffic.by_client.get(caller, (0, 0))
        info.transport.CopyFrom(pb.TransportStats(client_bytes_received=received, client_bytes_sent=sent))
        return info

    @unary_errors
    async def ListDatasets(
        self, request: pb.ListDatasetsRequest, context: _Context
    ) -> pb.ListDatasetsResponse:
        """The caller's datasets with their grants."""
        owner = self._authenticate(context).name
        listing = self._catalog.datasets(owner)
        return pb.ListDatasetsResponse(datasets=[convert.dataset_info(s, g) for s, g in listing])

    @unary_errors
    async def AddGrant(self, request: pb.AddGrantRequest, context: _Context) -> pb.AddGrantResponse:
        """Add a grant to one of the caller's datasets."""
        owner = self._authenticate(context).name
        name = validate_name(request.name, "dataset name")
        await self._catalog.add_grant(owner, name, convert.grant_from_proto(request.grant))
        return pb.AddGrantResponse()

    @unary_errors
    async def RevokeGrant(self, request: pb.RevokeGrantRequest, context: _Context) -> pb.RevokeGrantResponse:
        """Revoke a grant of one of the caller's datasets."""
        owner = self._authenticate(context).name
        await self._catalog.revoke_grant(owner, validate_name(request.name, "dataset name"), request.grant_id)
        return pb.RevokeGrantResponse()

    @unary_errors
    async def ListJobs(self, request: pb.ListJobsRequest, context: _Context) -> pb.ListJobsResponse:
        """The jobs the caller submitted or receives."""
        caller = self._authenticate(context).name
        running = self._jobs.running_records(caller)
        records = await asyncio.to_thread(self._catalog.jobs, caller, running, request.limit)
        return pb.ListJobsResponse(jobs=_newest_within(records, MAX_LISTING_BYTES))

    @unary_errors
    async def GetAuditTrail(
        self, request: pb.GetAuditTrailRequest, context: _Context
    ) -> pb.GetAuditTrailResponse:
        """Every job that read the caller's datasets."""
        owner = self._authenticate(context).name
        name = validate_name(request.name, "dataset name") if request.name else ""
        records = await asyncio.to_thread(self._catalog.audit_trail, owner, name, request.limit)
        return pb.GetAuditTrailResponse(records=_newest_within(records, MAX_LISTING_BYTES))


MAX_LISTING_BYTES = 3 << 20
"""Records in one ListJobs or GetAuditTrail answer, at most (gRPC's message limit is 4 MiB)."""


def _newest_within(records: Sequence[JobRecord], budget: int) -> list[pb.JobRecord]:
    """The newest records whose wire form fits ``budget`` bytes, oldest first."""
    kept: list[pb.JobRecord] = []
    for record in reversed(records):
        message = convert.job_record_to_proto(record)
        budget -= message.ByteSize() + 8
        if budget < 0:
            break
        kept.append(message)
    return kept[::-1]
