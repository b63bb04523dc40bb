"""THREAT_MODEL.md links every claim to tests: those tests must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_the_threat_model_names_exists() -> None:
    text = (ROOT / "THREAT_MODEL.md").read_text()
    references = re.findall(r"`(tests/[\w/]+(?:\.py)?/?)(?:::(\w+))?`", text)
    assert len(references) > 30
    missing = []
    for path, name in references:
        target = ROOT / path
        if not target.exists():
            missing.append(path)
        elif name and f"def {name}(" not in target.read_text():
            missing.append(f"{path}::{name}")
    # "`::name`" continues the previous file in a table cell.
    current = None
    for match in re.finditer(r"`(tests/[\w/]+\.py)(?:::\w+)?`|`::(\w+)`", text):
        if match.group(1):
            current = ROOT / match.group(1)
        elif current is not None and f"def {match.group(2)}(" not in current.read_text():
            missing.append(f"{current.relative_to(ROOT)}::{match.group(2)}")
    assert not missing, missing
