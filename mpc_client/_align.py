"""Turning customer ids into join tokens with the three servers' OPRF (``mpc.v1.AlignmentService``).

Per chunk of ids (at most 65536): blind them (``oprf.blind``: a fresh scalar
per id), send the same points to the three servers, check their compact
answers against each other and unblind (``oprf.finalize_compact``). Chunks are
pipelined: while the servers evaluate one chunk, a worker thread unblinds the
previous one and blinds the next (libsodium runs outside the GIL). A failed
check raises :class:`TokenIntegrityError` (DATA_LOSS): at least one server
answered wrongly, and no token is returned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

from mpc_client._transport import ServerConnection, fan_out
from mpc_core.errors import ConfigError, DataLossError, ProtocolError
from mpc_proto.v1 import alignment_service_pb2 as pb
from mpc_proto.v1 import alignment_service_pb2_grpc as pb_grpc

CHUNK_IDS = 65_536
_T = TypeVar("_T")
Progress = Callable[[int], None]
"""Told how many more ids are done."""


def _oprf() -> Any:
    try:
        from mpc_core import oprf  # noqa: PLC0415 - libsodium is needed only to align
    except ImportError as exc:
        raise ConfigError(f"aligning ids needs libsodium: {exc}") from None
    return oprf


class TokenIntegrityError(DataLossError):
    """The three servers' OPRF answers do not fit together: at least one is wrong; no token was made."""

    grpc_status: ClassVar[str] = "DATA_LOSS"


class Aligner:
    """The alignment calls of one client, to all three servers."""

    def __init__(self, connections: tuple[ServerConnection, ...], pool: ThreadPoolExecutor) -> None:
        """Call through the client's connections and thread pool."""
        self._connections = connections
        self._pool = pool

    def open(
        self, alignment_id: str, participants: dict[str, int], window_seconds: float, deadline: float
    ) -> tuple[str, float]:
        """Open the alignment on all three servers at once; returns its name and closing time."""
        request = pb.OpenAlignmentRequest(
            alignment_id=alignment_id,
            participants=[pb.AlignmentParticipant(owner=o, max_ids=n) for o, n in participants.items()],
            window_seconds=window_seconds,
        )
        replies = self._fan_out(lambda stub: stub.OpenAlignment(request, timeout=deadline))
        names = {reply.alignment for reply in replies}
        if len(names) != 1:
            raise ProtocolError(f"the servers named the alignment differently: {sorted(names)}")
        return names.pop(), min(reply.closes_at for reply in replies)

    def tokens(
        self, alignment: str, ids: Sequence[str | int], deadline: float, progress: Progress | None = None
    ) -> list[bytes]:
        """The 16-byte token of every id, in order (ids must be distinct after canonicalisation)."""
        oprf = _oprf()
        session = alignment.encode()
        canonical = oprf.canonical_ids(list(ids))  # refuses duplicates and bad ids before sending
        chunks = [canonical[i : i + CHUNK_IDS] for i in range(0, len(canonical), CHUNK_IDS)]
        names = [c.name for c in self._connections]
        tokens: list[bytes] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mpc-align") as local:
            upcoming = [local.submit(oprf.blind_canonical, session, chunk) for chunk in chunks[:1]]
            finishing: list[tuple[Future[list[bytes]], int]] = []
            for index, chunk in enumerate(chunks):
                blinding = upcoming.pop().result()
                if index + 1 < len(chunks):  # blinded while the servers evaluate this chunk
                    upcoming.append(local.submit(oprf.blind_canonical, session, chunks[index + 1]))
                values = self._evaluate(alignment, blinding.elements, deadline)
                finishing.append((local.submit(_finalize, oprf, blinding, values, names), len(chunk)))
                if len(finishing) > 1:  # unblinded while the servers evaluate the next chunk
                    tokens += _collect(finishing.pop(0), progress)
            tokens += [token for done in finishing for token in _collect(done, progress)]
        return tokens

    def _evaluate(self, alignment: str, elements: list[bytes], deadline: float) -> list[list[bytes]]:
        request = pb.EvaluateTokensRequest(alignment=alignment, points=b"".join(elements))
        replies = self._fan_out(lambda stub: stub.EvaluateTokens(request, timeout=deadline))
        out = []
        for connection, reply in zip(self._connections, replies, strict=True):
            values = reply.values  # one copy: each access to a bytes field makes a new one
            if len(values) != len(request.points):
                answered = f"{connection.name} answered {len(values)} bytes"
                raise ProtocolError(f"{answered} for {len(elements)} points")
            out.append([values[i : i + 32] for i in range(0, len(values), 32)])
        return out

    def close(self, alignment: str, deadline: float) -> None:
        """Close the alignment on all three servers (its opener only)."""
        request = pb.CloseAlignmentRequest(alignment=alignment)
        self._fan_out(lambda stub: stub.CloseAlignment(request, timeout=deadline))

    def _fan_out(self, call: Callable[[pb_grpc.AlignmentServiceStub], _T]) -> list[_T]:
        return fan_out(self._connections, lambda c: call(pb_grpc.AlignmentServiceStub(c.channel)), self._pool)


def _collect(done: tuple[Future[list[bytes]], int], progress: Progress | None) -> list[bytes]:
    """The tokens of one finished chunk (its errors raised here), reported to ``progress``."""
    future, count = done
    tokens = future.result()
    if progress is not None:
        progress(count)
    return tokens


def _finalize(oprf: Any, blinding: Any, values: list[list[bytes]], names: list[str]) -> list[bytes]:
    try:
        result: list[bytes] = oprf.finalize_compact(blinding, values, names)
    except oprf.CompactCheckError as exc:
        raise TokenIntegrityError(
            f"the servers' token evaluations disagree for {len(exc.positions)} ids: at least one of "
            f"{', '.join(names)} answered wrongly; no token was made"
        ) from None
    return result


class AlignmentCalls:
    """The alignment calls of :class:`~mpc_client.MpcClient`."""

    identity: str
    _connections: tuple[ServerConnection, ...]
    _pool: ThreadPoolExecutor

    def _deadline(self, timeout: float | None) -> float:
        raise NotImplementedError

    def open_alignment(
        self,
        alignment_id: str,
        participants: dict[str, int],
        *,
        window_seconds: float = 600.0,
        timeout: float | None = None,
    ) -> str:
        """Open an alignment for ``participants`` (owner -> most ids it may evaluate); returns its name.

        The servers set up a fresh OPRF key for it, shared among them, used
        for at most ``window_seconds`` and deleted afterwards. Every owner whose
        datasets are to be joined uploads them keyed by tokens of the same
        alignment (``upload_table(..., alignment=name)``).
        """
        name, _ = Aligner(self._connections, self._pool).open(
            alignment_id, dict(participants), window_seconds, self._deadline(timeout)
        )
        return name

    def tokens(
        self,
        alignment: str,
        ids: Sequence[str | int],
        *,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> list[bytes]:
        """The alignment's 16-byte token of each id (needs libsodium; ids never leave this machine)."""
        return Aligner(self._connections, self._pool).tokens(
            alignment, ids, self._deadline(timeout), progress
        )

    def close_alignment(self, alignment: str, *, timeout: float | None = None) -> None:
        """Close an alignment this client opened: its key is deleted on the three servers."""
        Aligner(self._connections, self._pool).close(alignment, self._deadline(timeout))
