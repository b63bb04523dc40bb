"""Imports point one way: core <- protocol <- service <- {transport <- api} <- app.

Walks every module's AST (no imports executed) and checks what it imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "mpc_core": (
        "mpc_server",
        "mpc_client",
        "mpc_cli",
        "mpc_proto",
        "grpc",
        "asyncio",
        "socket",
        "subprocess",
        "os",
    ),
    "mpc_server/protocol": (
        "mpc_server.service",
        "mpc_server.transport",
        "mpc_server.api",
        "mpc_server.app",
        "grpc",
        "mpc_proto",
    ),
    "mpc_server/service": ("mpc_server.transport", "mpc_server.api", "mpc_server.app", "grpc", "mpc_proto"),
    "mpc_server/transport": ("mpc_server.api", "mpc_server.app", "mpc_server.service"),
    "mpc_server/api": ("mpc_server.app",),
    "mpc_client": ("mpc_server", "mpc_cli"),
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports_point_one_way(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, package
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in _imports(path)
        for banned in FORBIDDEN[package]
        if name == banned or name.startswith(banned + ".")
    ]
    assert not offenders, offenders


def test_no_insecure_randomness_or_pickle_in_product_code() -> None:
    banned = {"random", "pickle", "numpy.random"}
    offenders = []
    for package in ("mpc_core", "mpc_server", "mpc_client", "mpc_cli"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            imported = _imports(path)
            if imported & banned or "np.random" in text or "numpy.random" in text:
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_no_module_is_too_long() -> None:
    long = [
        f"{path.relative_to(ROOT)}: {count} lines"
        for package in ("mpc_core", "mpc_server", "mpc_client", "mpc_cli")
        for path in (ROOT / package).rglob("*.py")
        if (count := len(path.read_text().splitlines())) > 400
    ]
    assert not long, long


def test_every_package_is_installed() -> None:
    """pyproject.toml lists packages by hand: a subpackage missing there breaks ``pip install .``."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    renamed = {directory: package for package, directory in config.get("package-dir", {}).items()}
    found = set()
    for init in ROOT.glob("*/**/__init__.py"):
        parts = init.parent.relative_to(ROOT).parts
        if parts[0] in {"tests", "clients", "scripts", "deploy", "build"} or parts[0].startswith("."):
            continue
        found.add(".".join((renamed.get(parts[0], parts[0]), *parts[1:])))
    assert found - listed == set(), f"packages missing from pyproject.toml: {sorted(found - listed)}"
