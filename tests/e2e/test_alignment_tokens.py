"""Join tokens from the three servers' OPRF: equal ids give equal tokens, quotas and windows hold."""

from __future__ import annotations

import secrets
import time

import grpc
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_client import AlreadyExistsError, InvalidArgumentError, NotFoundError, ResourceLimitError
from mpc_proto.v1 import alignment_service_pb2 as pb
from mpc_proto.v1 import alignment_service_pb2_grpc as pb_grpc

pytest.importorskip(
    "pysodium", reason="alignment needs libsodium (Debian: libsodium23)", exc_type=ImportError
)
pytestmark = pytest.mark.e2e


def _open(cluster: LocalCluster, **quotas: int) -> str:
    with cluster.client("model-owner") as opener:
        participants = {name.replace("_", "-"): count for name, count in quotas.items()}
        return opener.open_alignment(f"a-{secrets.token_hex(3)}", participants, window_seconds=60)


def test_two_banks_get_equal_tokens_for_shared_customers_only(cluster: LocalCluster) -> None:
    alignment = _open(cluster, bank_1=5, bank_2=4)
    with cluster.client("bank-1") as bank:
        first = bank.tokens(alignment, ["C-1", "c-2", 17, "Anna  Smith", "x"])
    with cluster.client("bank-2") as bank:
        second = bank.tokens(alignment, ["c-1", "17", "anna smith", "y"])  # canonical forms match
    assert all(len(t) == 16 for t in first + second)
    assert first[0] == second[0] and first[2] == second[1] and first[3] == second[2]
    assert len({*first, *second}) == 6  # "c-2", "x" and "y" match nothing
    again = _open(cluster, bank_1=5)
    with cluster.client("bank-1") as bank:
        assert set(bank.tokens(again, ["C-1"])).isdisjoint(first)  # a new alignment, a new key


def test_quotas_participants_windows_and_closing(cluster: LocalCluster) -> None:
    alignment = _open(cluster, bank_1=3)
    with cluster.client("bank-1") as bank:
        bank.tokens(alignment, ["a", "b"])
        with pytest.raises(ResourceLimitError, match="may evaluate 1 more ids"):
            bank.tokens(alignment, ["c", "d"])
        with pytest.raises(InvalidArgumentError, match="rows 0 and 1 are equal once canonical"):
            bank.tokens(alignment, ["Dup", "dup"])
    with (
        cluster.client("bank-2") as stranger,
        pytest.raises(NotFoundError, match=f"no open alignment {alignment}"),
    ):
        stranger.tokens(alignment, ["a"])
    with cluster.client("model-owner") as opener:
        with pytest.raises(AlreadyExistsError):
            opener.open_alignment(alignment.split("/")[1], {"bank-1": 1})
        opener.close_alignment(alignment)
    with cluster.client("bank-1") as bank, pytest.raises(NotFoundError):
        bank.tokens(alignment, ["c"])  # the key is gone


def test_a_point_off_the_group_is_refused_by_position(cluster: LocalCluster) -> None:
    alignment = _open(cluster, bank_1=4)
    ca = (cluster.cert_dir / "ca.pem").read_bytes()
    key, cert = ((cluster.cert_dir / f"bank-1{ext}").read_bytes() for ext in (".key", ".pem"))
    options = [("grpc.ssl_target_name_override", "server-0")]
    with grpc.secure_channel(
        cluster.addresses[0], grpc.ssl_channel_credentials(ca, key, cert), options
    ) as channel:
        stub = pb_grpc.AlignmentServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.EvaluateTokens(
                pb.EvaluateTokensRequest(alignment=alignment, points=b"\xff" * 64), timeout=10
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "blinded element 0 is not a group element" in (caught.value.details() or "")
        with pytest.raises(grpc.RpcError) as caught:
            stub.EvaluateTokens(
                pb.EvaluateTokensRequest(alignment=alignment, points=b"\x00" * 33), timeout=10
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_an_alignment_closes_at_the_end_of_its_window(cluster: LocalCluster) -> None:
    with cluster.client("model-owner") as opener:
        alignment = opener.open_alignment(f"w-{secrets.token_hex(3)}", {"bank-1": 5}, window_seconds=1)
    time.sleep(1.5)
    with cluster.client("bank-1") as bank, pytest.raises(NotFoundError):
        bank.tokens(alignment, ["a"])
