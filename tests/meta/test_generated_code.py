"""The committed generated code matches the .proto files (regenerated here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools is needed to regenerate")
    out = tmp_path / "mpc_proto"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    committed = ROOT / "mpc_proto"
    fresh = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    existing = {
        p.relative_to(committed): p.read_bytes()
        for p in committed.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert sorted(fresh) == sorted(existing), "generated file set differs: run scripts/gen_protos.py"
    stale = [str(name) for name, data in fresh.items() if existing[name] != data]
    assert not stale, f"stale generated files {stale}: run python scripts/gen_protos.py"


def test_protos_follow_buf_style() -> None:
    """Package mpc.v1, *Service names, enum zero values *_UNSPECIFIED."""
    for proto in (ROOT / "protos" / "mpc" / "v1").glob("*.proto"):
        text = proto.read_text()
        assert "package mpc.v1;" in text, proto.name
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["service"]:
                assert words[1].endswith("Service"), line
            if words[:1] == ["enum"]:
                enum_body = text.split(line, 1)[1]
                first_value = enum_body.split("=", 1)[0].split()[-1]
                assert first_value.endswith("_UNSPECIFIED"), line
