"""Regenerate the committed Python code for ``protos/mpc/v1/*.proto``.

Usage: ``python scripts/gen_protos.py [--out DIR]`` (default: the repository's
``mpc_proto`` package). Needs the pinned ``grpcio-tools`` and ``mypy-protobuf``
from the ``dev`` extra, so that the output is byte-for-byte reproducible;
``tests/test_generated_code.py`` regenerates into a temporary directory and
fails when the committed files are stale.

protoc names Python modules after the proto file paths (``mpc/v1/...``), so
the imports it writes (``from mpc.v1 import types_pb2``) are rewritten to the
``mpc_proto.v1`` package the project ships.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc  # dev dependency: pip install -e '.[dev]'

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO_PACKAGE_DIR = PROTO_ROOT / "mpc" / "v1"
DEFAULT_OUT = ROOT / "mpc_proto"
_IMPORT = re.compile(r"^from mpc\.v1 import ", re.MULTILINE)
_INIT_TEXT = '"""Generated protocol buffer and gRPC code for package ``mpc.v1``."""\n'


def _plugin(name: str) -> str:
    """Locate a protoc plugin installed next to this Python (venv-safe)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found: pip install -e '.[dev]'")
    return found


def generate(out_dir: Path) -> list[Path]:
    """Run protoc over every proto file and write the package into ``out_dir``."""
    protos = sorted(PROTO_PACKAGE_DIR.glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
            f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
            f"--python_out={tmp}",
            f"--mypy_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--mypy_grpc_out={tmp}",
            *[str(p) for p in protos],
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        target = out_dir / "v1"
        target.mkdir(parents=True, exist_ok=True)
        written = []
        for produced in sorted((Path(tmp) / "mpc" / "v1").iterdir()):
            text = _IMPORT.sub("from mpc_proto.v1 import ", produced.read_text())
            dest = target / produced.name
            dest.write_text(text)
            written.append(dest)
    for init in (out_dir / "__init__.py", target / "__init__.py"):
        init.write_text(_INIT_TEXT)
        written.append(init)
    (out_dir / "py.typed").write_text("")
    return written


def main() -> int:
    """Parse arguments and regenerate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output package dir")
    args = parser.parse_args()
    if args.out == DEFAULT_OUT and (DEFAULT_OUT / "v1").exists():
        shutil.rmtree(DEFAULT_OUT / "v1")
    for path in generate(args.out):
        print(path.relative_to(args.out.parent) if args.out == DEFAULT_OUT else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
