"""Fixtures that start real three-server clusters (separate processes, mTLS, loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mpc_cli.local_cluster import LocalCluster

CLIENTS = ("model-owner", "bank-1", "bank-2", "outsider")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One cluster shared by the tests that do not break it."""
    local = LocalCluster(tmp_path_factory.mktemp("cluster"), clients=CLIENTS)
    local.start()
    yield local
    local.stop()


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster of its own, for tests that kill or stop servers."""
    local = LocalCluster(tmp_path, clients=CLIENTS, log_level="INFO")
    local.start()
    yield local
    local.stop()
