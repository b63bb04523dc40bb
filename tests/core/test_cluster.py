"""The cluster file's revocation list setting (``revoked``); the rest is in test_identity_and_cluster.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpc_core.cluster import parse_cluster, render_cluster
from mpc_core.errors import ConfigError

SERVERS = [(f"server-{i}", f"127.0.0.1:{7100 + i}") for i in range(3)]


def test_the_revocation_list_is_optional_and_relative_to_the_cluster_file(tmp_path: Path) -> None:
    assert parse_cluster(render_cluster(SERVERS, "certs/ca.pem"), tmp_path).revoked_path is None
    text = render_cluster(SERVERS, "certs/ca.pem", revoked="certs/revoked.txt")
    assert 'revoked = "certs/revoked.txt"' in text
    assert parse_cluster(text, tmp_path).revoked_path == tmp_path / "certs" / "revoked.txt"
    absolute = render_cluster(SERVERS, "certs/ca.pem", revoked="/etc/mpc/revoked.txt")
    assert parse_cluster(absolute, tmp_path).revoked_path == Path("/etc/mpc/revoked.txt")


@pytest.mark.parametrize("value", ['""', "3", "true", '["a"]'])
def test_a_bad_revocation_list_setting_is_an_error(tmp_path: Path, value: str) -> None:
    plain = render_cluster(SERVERS, "certs/ca.pem")
    text = plain.replace('ca = "certs/ca.pem"', f'ca = "certs/ca.pem"\nrevoked = {value}')
    with pytest.raises(ConfigError, match="'revoked' must name the certificate revocation list file"):
        parse_cluster(text, tmp_path)


def test_the_revocation_list_is_not_part_of_the_cluster_fingerprint(tmp_path: Path) -> None:
    plain = parse_cluster(render_cluster(SERVERS, "certs/ca.pem"), tmp_path)
    listed = parse_cluster(render_cluster(SERVERS, "certs/ca.pem", revoked="r.txt"), tmp_path)
    assert plain.fingerprint(b"ca") == listed.fingerprint(b"ca")
