"""Atomic uploads across the three servers: a dataset is published on all three or on none.

After the two checking rounds of ``service.uploads`` (same header, same
copies), each server runs this commit protocol, a two-phase commit in which
every server votes to both others:

1. **prepare**: the upload's file (written and fsynced meanwhile) is made
   durable as *prepared*, with a record naming the upload id
   (``service.commit_journal``). A server that cannot (full disk, I/O
   error) aborts the upload towards its peers and reports the error.
2. **vote**: each server sends "prepared" to both peers and waits for
   theirs (one round, one word each way).
3. **decide**: with both peers' votes a server knows all three prepared:
   it records ``committed``, then publishes. A peer's abort means that
   peer never prepared: it rolls back. Anything else (a peer lost, the
   deadline) leaves it *uncertain*: it must not roll back on its own, as
   the other two may have committed, nor publish, as they may not have.

An uncertain server (and a server that restarts with a prepared upload)
settles by asking both peers over the peer API (``PeerService.UploadOutcome``)
what they know, again with backoff until it can decide (:func:`decide`):
a peer that committed means commit; a peer that never prepared it or
rolled it back (``unknown``) means roll back, since commit needs all three
prepared; both peers prepared and uncertain too means nobody committed nor
can (each answers ``pending`` while it may still vote), so roll back. Until
it is settled the upload is visible nowhere and its name stays locked.

Crash points (one server S killed, the other two alive; "none" and "all"
are the outcome on the three servers once S is back):

- before its prepare is durable: S has no record, so after the restart it
  answers ``unknown``; the others (uncertain or told no) roll back: none.
- prepared, no vote sent: nobody has all votes; the others are uncertain
  and wait for S; S restarts prepared, finds both uncertain: none.
- vote sent to one peer only: that peer has all three votes and commits;
  the other learns it from that peer; S learns it at restart: all.
- votes sent (or the decision recorded, or published): the others commit;
  S finishes at restart, from its own ``committed`` record or by asking:
  all.
- a full disk on S in the window: S's prepare fails and it aborts towards
  both peers, which roll back at once: none, and the name is free again.

The uploader gets an error naming the server that did not complete: the
failing server's own error, a peer's "rolled back: server-N could not
store it", or UNAVAILABLE naming the lost peer while the outcome is open.
A dataset replaced with ``overwrite`` stays in its old version until the
new one is published. The two-phase commit blocks (stays uncertain) while
the server it waits for is down; it never decides without it.

**Test hook, for tests only**: the environment variable
``MPC_TEST_PAUSE_AT`` of the server process (read once at start by
``mpc_server.app``; nothing a client sends can set it) names one of
:data:`STEPS`; every upload pauses there, logging "pausing at commit step
<step>", until the file named by ``MPC_TEST_RESUME_FILE`` exists (if set) or
:data:`PAUSE_SECONDS` pass, so that a test can kill the server at that
point (``tests/e2e/test_atomic_uploads.py``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from mpc_core.errors import (
    ConfigError,
    JobAbortedError,
    MpcError,
    ProtocolError,
)
from mpc_core.ring import Words
from mpc_core.types import PartyId
from mpc_server.protocol.context import PartyContext

_log = logging.getLogger(__name__)

STEPS = ("checked", "prepared", "half-voted", "voted", "committed", "published")
"""Where the test hook can pause: after the checks, after the prepare, after the vote to the
next party only, after both votes, after the ``committed`` record, after the publish."""
PAUSE_SECONDS = 600.0
ASK_SECONDS = 5.0
"""Deadline of one question to a peer while settling."""
RETRY_SECONDS = (0.2, 5.0)
"""First and longest wait between two attempts to settle."""
_YES = 1


class Outcome(enum.StrEnum):
    """What a server knows of an upload (its answer to ``UploadOutcome``)."""

    UNKNOWN = "unknown"
    """Never prepared here, or rolled back: this server will never publish it."""
    PENDING = "pending"
    """Still being received, checked or voted on here: it may still vote."""
    PREPARED = "prepared"
    """Prepared here, and the outcome unknown here too."""
    COMMITTED = "committed"
    """Decided here to commit (published, or being published)."""


class PeerOutcomes(Protocol):
    """Asks a peer what it knows of an upload (``transport.peer_outcomes``)."""

    async def ask(self, party: PartyId, owner: str, name: str, upload_id: bytes, timeout: float) -> str:
        """The peer's :class:`Outcome` value, within ``timeout`` seconds.

        Raises:
            MpcError: the peer could not be asked.
        """
        ...


def decide(answers: Sequence[Outcome | None]) -> bool | None:
    """What an uncertain, prepared server concludes from its peers' answers (None: unreachable).

    True: commit; False: roll back; None: ask again later.
    """
    if Outcome.COMMITTED in answers:
        return True
    if Outcome.UNKNOWN in answers:
        return False
    if all(answer is Outcome.PREPARED for answer in answers):
        return False
    return None


@dataclass(frozen=True)
class CommitPause:
    """The test hook of the module docstring: pause at ``step`` (one of :data:`STEPS`)."""

    step: str
    resume_file: Path | None = None

    @staticmethod
    def from_environment(environ: Mapping[str, str]) -> CommitPause | None:
        """The hook a server process's environment asks for (``MPC_TEST_PAUSE_AT``), if any.

        Raises:
            ConfigError: an unknown step.
        """
        step = environ.get("MPC_TEST_PAUSE_AT", "")
        if not step:
            return None
        if step not in STEPS:
            raise ConfigError(f"MPC_TEST_PAUSE_AT (a test-only hook) must be one of {', '.join(STEPS)}")
        _log.warning("test hook MPC_TEST_PAUSE_AT=%s is set: every upload pauses there", step)
        resume = environ.get("MPC_TEST_RESUME_FILE", "")
        return CommitPause(step, Path(resume) if resume else None)

    async def at(self, step: str) -> None:
        """Pause here if this is the step (for tests only)."""
        if step != self.step:
            return
        _log.warning("test hook MPC_TEST_PAUSE_AT: pausing at commit step %s", step)
        loop = asyncio.get_running_loop()
        end = loop.time() + PAUSE_SECONDS
        while loop.time() < end:
            if self.resume_file is not None and await asyncio.to_thread(self.resume_file.exists):
                _log.warning("test hook: resuming after commit step %s", step)
                return
            await asyncio.sleep(0.05)


async def vote(ctx: PartyContext, pause: CommitPause) -> tuple[bool | None, MpcError | None]:
    """Tell both peers this server prepared, then hear theirs (steps 2 and 3 of the module docstring).

    Returns True with both peers' votes (all three prepared), False with a
    peer's abort (:class:`JobAbortedError`: it never prepared), None with
    the error that left this server uncertain.
    """
    tag = ctx.allocate_tag()
    yes: Words = np.array([_YES], dtype=np.uint64)
    try:
        ctx.stats.rounds += 1
        await ctx.send(ctx.next, tag, yes)
        await pause.at("half-voted")
        await ctx.send(ctx.prev, tag, yes)
        await pause.at("voted")
        for peer in (ctx.next, ctx.prev):
            words = await ctx.recv(peer, tag)
            if words.size != 1 or int(words[0]) != _YES:
                raise ProtocolError(f"malformed commit vote from {ctx.channel.peer_name(peer)}")
    except JobAbortedError as exc:
        return False, exc
    except MpcError as exc:
        return None, exc
    return True, None
