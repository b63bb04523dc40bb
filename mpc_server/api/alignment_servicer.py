"""The alignment API (``mpc.v1.AlignmentService``): thin over ``service.alignment``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from mpc_core.errors import InvalidArgumentError
from mpc_core.identity import Principal, validate_name
from mpc_proto.v1 import alignment_service_pb2 as pb
from mpc_proto.v1 import alignment_service_pb2_grpc as pb_grpc
from mpc_server.service.alignment import AlignmentService
from mpc_server.transport.status import unary_errors

_Context = grpc.aio.ServicerContext[Any, Any]
DEFAULT_OPEN_TIMEOUT = 30.0


def _alignment(text: str) -> str:
    owner, slash, name = text.partition("/")
    if not slash:
        raise InvalidArgumentError("an alignment is named 'opener/alignment_id'")
    return f"{validate_name(owner, 'opener')}/{validate_name(name, 'alignment id')}"


class AlignmentServicer(pb_grpc.AlignmentServiceServicer):
    """Serves the alignment API of one server."""

    def __init__(self, alignments: AlignmentService, authenticate: Callable[[_Context], Principal]) -> None:
        """Serve from ``alignments``; ``authenticate`` names the caller."""
        self._alignments = alignments
        self._authenticate = authenticate

    @unary_errors
    async def OpenAlignment(
        self, request: pb.OpenAlignmentRequest, context: _Context
    ) -> pb.OpenAlignmentResponse:
        """Open an alignment with the peers."""
        opener = self._authenticate(context).name
        participants: dict[str, int] = {}
        for item in request.participants:
            if item.owner in participants:
                raise InvalidArgumentError(f"participant {item.owner} is named twice")
            participants[item.owner] = item.max_ids
        remaining = context.time_remaining()
        timeout = DEFAULT_OPEN_TIMEOUT if remaining is None else max(0.1, remaining * 0.9)
        name, closes_at = await self._alignments.open(
            opener, request.alignment_id, participants, request.window_seconds, timeout
        )
        return pb.OpenAlignmentResponse(alignment=name, closes_at=closes_at)

    @unary_errors
    async def EvaluateTokens(
        self, request: pb.EvaluateTokensRequest, context: _Context
    ) -> pb.EvaluateTokensResponse:
        """Evaluate this server's part of the OPRF for a participant."""
        caller = self._authenticate(context).name
        values, remaining = await self._alignments.evaluate(
            caller, _alignment(request.alignment), request.points
        )
        return pb.EvaluateTokensResponse(values=values, remaining=remaining)

    @unary_errors
    async def CloseAlignment(
        self, request: pb.CloseAlignmentRequest, context: _Context
    ) -> pb.CloseAlignmentResponse:
        """Close an alignment early."""
        caller = self._authenticate(context).name
        self._alignments.close(caller, _alignment(request.alignment))
        return pb.CloseAlignmentResponse()
