"""Which answer a second upload of a name gets while another upload of it is being committed."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from mpc_core.errors import AlreadyExistsError, FailedPreconditionError
from mpc_core.types import PartyId
from mpc_server.protocol.memory import InMemoryNetwork
from mpc_server.service.commit import Outcome
from mpc_server.service.commit_journal import CommitJournal
from mpc_server.service.key_store import KeyStore
from mpc_server.service.model import DatasetRef
from mpc_server.service.store import FileDatasetStore
from mpc_server.service.upload_commits import UploadCommits

REF = DatasetRef("bank-1", "income")


class _NoPeers:
    """Peers that are never asked here."""

    async def ask(self, party: PartyId, owner: str, name: str, upload_id: bytes, timeout: float) -> str:
        raise AssertionError("check_fresh must not ask the peers")


def _commits(root: Path) -> UploadCommits:
    store = FileDatasetStore(root)
    journal = CommitJournal(root, store, KeyStore(root))
    return UploadCommits(journal, store, InMemoryNetwork().channels[0], _NoPeers())


@pytest.mark.parametrize("state", [Outcome.PENDING, Outcome.COMMITTED])
def test_a_name_being_committed_now_is_an_upload_in_progress(tmp_path: Path, state: Outcome) -> None:
    """Racing uploads of one name: the loser is told another upload is in progress (ALREADY_EXISTS)."""
    commits = _commits(tmp_path)
    upload = commits.open(REF, secrets.token_bytes(16), 32)
    commits.check_fresh(REF, secrets.token_bytes(16))  # still receiving: the store's own lock decides
    upload.settling, upload.state = True, state
    with pytest.raises(AlreadyExistsError, match="another upload of dataset bank-1/income is in progress"):
        commits.check_fresh(REF, secrets.token_bytes(16))
    commits.check_fresh(REF, upload.upload_id)  # the same upload id is not refused here
    commits.check_fresh(DatasetRef("bank-1", "debt"), secrets.token_bytes(16))


def test_an_unsettled_upload_reserves_its_name_until_the_peers_settle_it(tmp_path: Path) -> None:
    commits = _commits(tmp_path)
    upload = commits.open(REF, secrets.token_bytes(16), 32)
    upload.settling, upload.state, upload.waiting_for = True, Outcome.PREPARED, "server-2"
    with pytest.raises(FailedPreconditionError, match="not settled yet: it waits for server-2"):
        commits.check_fresh(REF, secrets.token_bytes(16))
