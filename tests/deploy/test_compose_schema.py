"""docker-compose.yml is a valid Compose Specification file, usable by docker-compose v1.29.

The schema is the compose-spec JSON schema vendored by the PyPI package
``check-jsonschema``; the file is loaded with PyYAML, which is also what
docker-compose v1 uses (YAML anchors and ``<<`` merge keys resolved).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
NODES = ("node0", "node1", "node2")
_MISSING = (
    "needs the test dependencies check-jsonschema, jsonschema and PyYAML "
    "(pip install 'check-jsonschema>=0.29' 'jsonschema>=4.18' 'PyYAML>=6')"
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason=_MISSING)
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _compose_schema() -> dict[str, Any]:
    pytest.importorskip("check_jsonschema", reason=_MISSING)
    vendor = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema: dict[str, Any] = json.loads(vendor.read_text())
    return schema


def test_valid_against_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason=_MISSING)
    schema = _compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def test_docker_compose_v1_accepts_it() -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (deploy/ci/setup-podman.sh installs it)")
    completed = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "--profile", "demo", "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr


def test_no_version_key_and_no_v2_only_top_level_keys(compose: dict[str, Any]) -> None:
    # docker-compose v1.29 reads a file without `version` as the Compose Specification, and
    # does not know the top-level `name` (Compose v2).
    assert "version" not in compose and "name" not in compose


def test_nodes_wait_for_certificates_and_probe_health_without_spaces(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for index, node in enumerate(NODES):
        service = services[node]
        assert service["depends_on"]["certs"]["condition"] == "service_completed_successfully"
        test = service["healthcheck"]["test"]
        assert test[:3] == ["CMD", "mpc", "probe"]
        assert not [arg for arg in test if re.search(r"\s", arg)], "Podman splits health checks on spaces"
        assert f"server-{index}" in test
        assert service["ports"] == [
            f"${{MPC_BIND_ADDRESS:-0.0.0.0}}:${{MPC_PORT_{index}:-{7100 + index}}}:7100"
        ]
        assert service["init"] is True
        assert [volume.split(":")[0] for volume in service["volumes"]] == [node], "only its own volume"


def test_demo_is_a_profile_that_waits_for_healthy_nodes(compose: dict[str, Any]) -> None:
    demo = compose["services"]["demo"]
    assert demo["profiles"] == ["demo"]
    assert {node: demo["depends_on"][node]["condition"] for node in NODES} == dict.fromkeys(
        NODES, "service_healthy"
    )
    assert demo["command"][:3] == ["demo", "--cluster", "/var/lib/mpc/clients/cluster.toml"]


def test_only_the_certs_service_mounts_the_ca_key_volume(compose: dict[str, Any]) -> None:
    mounting = [
        name
        for name, service in compose["services"].items()
        for volume in service.get("volumes", [])
        if volume.split(":")[0] == "pki"
    ]
    assert mounting == ["certs"]


def test_dockerfile_base_image_arg_wheels_path_non_root_exec_entrypoint() -> None:
    text = DOCKERFILE.read_text()
    assert "ARG BASE_IMAGE=python:3.12-slim" in text
    assert "--no-index --find-links /wheels" in text
    assert re.search(r"^USER mpc$", text, re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["mpc"\]$', text, re.MULTILINE), "exec form: the server gets SIGTERM"
