"""Joining keyed datasets on tokens, and the stored token columns."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpc_core.errors import DataLossError, InvalidArgumentError
from mpc_server.service.join import inner_join, tokens_from_bytes
from mpc_server.service.key_store import KeyStore
from mpc_server.service.model import DatasetRef


@given(
    st.lists(st.integers(0, 60), unique=True, max_size=40),
    st.lists(st.integers(0, 60), unique=True, max_size=40),
    st.lists(st.integers(0, 60), unique=True, max_size=40),
)
def test_the_join_is_the_plaintext_inner_join_in_token_order(
    a: list[int], b: list[int], c: list[int]
) -> None:
    def tokens(ids: list[int]) -> bytes:
        return b"".join(i.to_bytes(16, "big") for i in ids)

    join = inner_join([tokens_from_bytes(tokens(ids)) for ids in (a, b, c)])
    common = sorted(set(a) & set(b) & set(c))
    assert [int.from_bytes(t.tobytes(), "big") for t in join.tokens] == common
    for ids, rows in zip((a, b, c), join.rows, strict=True):
        assert [ids[r] for r in rows] == common


def test_repeated_tokens_are_refused() -> None:
    twice = secrets.token_bytes(16)
    with pytest.raises(InvalidArgumentError, match="keyed input 1 repeats a token"):
        inner_join([tokens_from_bytes(twice), tokens_from_bytes(twice * 2)])
    with pytest.raises(InvalidArgumentError, match="16 bytes each"):
        tokens_from_bytes(b"short")


def test_tokens_are_stored_per_version_and_checked_when_read(tmp_path: Path) -> None:
    ref, version, data = DatasetRef("bank-1", "income"), secrets.token_bytes(16), secrets.token_bytes(16 * 5)
    store = KeyStore(tmp_path)
    store.write(ref, version, "model-owner/a1", data)
    assert KeyStore(tmp_path).read(ref, version, 5).tobytes() == data
    with pytest.raises(DataLossError, match="damaged or of another version"):
        KeyStore(tmp_path).read(ref, secrets.token_bytes(16), 5)
    path = tmp_path / "keys" / "bank-1" / "income.tokens"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(DataLossError, match="bank-1/income are damaged"):
        KeyStore(tmp_path).read(ref, version, 5)
    store.delete(ref)
    with pytest.raises(DataLossError, match="missing"):
        KeyStore(tmp_path).read(ref, version, 5)


def test_a_sweep_removes_the_tokens_of_jobs_without_outputs_only(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, subdir="output-keys")
    done, kept = DatasetRef("bank-1", "job-done"), DatasetRef("bank-1", "job-kept")
    for ref in (done, kept):
        store.write(ref, b"v" * 16, "job", secrets.token_bytes(16 * 3))
    assert store.sweep(lambda ref: ref == kept) == 1
    assert store.read(kept, b"v" * 16, 3).shape[0] == 3
    with pytest.raises(DataLossError, match="missing"):
        store.read(done, b"v" * 16, 3)
    assert not (tmp_path / "output-keys" / "bank-1" / "job-done.tokens").exists()
