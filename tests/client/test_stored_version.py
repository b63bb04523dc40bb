"""The SDK checks that every server stored the version and size it uploaded."""

from __future__ import annotations

import secrets
from types import SimpleNamespace
from typing import Any

import pytest

from mpc_client._upload import check_stored
from mpc_core.errors import ProtocolError
from mpc_proto.v1 import client_service_pb2 as pb

SERVERS: Any = [SimpleNamespace(name=f"server-{i}") for i in range(3)]


def test_matching_replies_pass_and_a_wrong_version_or_count_names_the_server() -> None:
    upload_id = secrets.token_bytes(16)
    replies = [pb.UploadDatasetResponse(upload_id=upload_id, element_count=5) for _ in range(3)]
    check_stored(SERVERS, replies, upload_id, 5)
    replies[1] = pb.UploadDatasetResponse(upload_id=secrets.token_bytes(16), element_count=5)
    with pytest.raises(ProtocolError, match=r"^server-1 reported storing another version"):
        check_stored(SERVERS, replies, upload_id, 5)
    replies[1] = pb.UploadDatasetResponse(upload_id=upload_id, element_count=4)
    replies[2] = pb.UploadDatasetResponse(upload_id=b"", element_count=5)
    with pytest.raises(ProtocolError, match=r"^server-1, server-2 reported"):
        check_stored(SERVERS, replies, upload_id, 5)
