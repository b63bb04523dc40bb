"""Virtualenvs for the peer systems, created on demand and cached.

CrypTen 0.4.1 is installed without its declared dependencies (it names
torchvision and the defunct ``sklearn`` package, neither needed to import
it), on top of ``torch==2.13.0``. One line of CrypTen imports a private
torch module that torch 2.13 no longer has; it only serves
``crypten.nn.from_pytorch``, so it is wrapped to tolerate the absence. MPyC
0.11 comes with numpy and gmpy2. Venvs live in ``$MPC_BENCH_HOME`` (default
``~/.cache/mpc-bench``); a ``.ready`` file marks a finished one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

TORCH_SPEC = os.environ.get("MPC_BENCH_TORCH", "torch==2.13.0")
CRYPTEN_STEPS: tuple[tuple[str, ...], ...] = (
    (TORCH_SPEC,),
    ("--no-deps", "crypten==0.4.1"),
    ("omegaconf>=2.0.6", "onnx>=1.7.0", "pyyaml>=5.3.1", "scipy>=1.6.0", "future", "numpy"),
)
MPYC_STEPS: tuple[tuple[str, ...], ...] = (("mpyc==0.11", "numpy", "gmpy2"),)
_ONNX_IMPORT = "    from torch.onnx._internal.registration import registry  # noqa\n"
_ONNX_TOLERANT = (
    "    try:  # torch 2.13 dropped this private module; only from_pytorch() needs it\n"
    "        from torch.onnx._internal.registration import registry  # noqa\n"
    "    except ImportError:\n"
    "        registry = None\n"
)


class PeerUnavailableError(Exception):
    """A peer system could not be installed here; the message says why."""


def home() -> Path:
    """Where the peer venvs are kept."""
    return Path(os.environ.get("MPC_BENCH_HOME", Path.home() / ".cache" / "mpc-bench"))


def _pip(python: Path, args: Sequence[str]) -> None:
    completed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *args], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
        raise PeerUnavailableError(f"pip install {' '.join(args)} failed: {' / '.join(tail)}")


def _ensure(name: str, steps: Sequence[Sequence[str]], check: str, progress: Callable[[str], None]) -> Path:
    venv = home() / f"{name}-venv"
    python = venv / "bin" / "python"
    if (venv / ".ready").exists():
        return python
    progress(f"creating the {name} virtualenv in {venv} (first run only; a minute or two) ...")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    for step in steps:
        _pip(python, step)
    if name == "crypten":
        _patch_crypten(python)
    completed = subprocess.run([str(python), "-c", check], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise PeerUnavailableError(f"{name} does not import: {completed.stderr.strip().splitlines()[-1:]}")
    (venv / ".ready").write_text(completed.stdout)
    return python


def _patch_crypten(python: Path) -> None:
    where = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    module = Path(where) / "crypten" / "nn" / "onnx_converter.py"
    text = module.read_text()
    if _ONNX_IMPORT in text:
        module.write_text(text.replace(_ONNX_IMPORT, _ONNX_TOLERANT, 1))


def crypten_python(progress: Callable[[str], None]) -> Path:
    """The CrypTen venv's interpreter, creating the venv if needed."""
    return _ensure(
        "crypten",
        CRYPTEN_STEPS,
        "import crypten, torch; print(crypten.__version__, torch.__version__)",
        progress,
    )


def mpyc_python(progress: Callable[[str], None]) -> Path:
    """The MPyC venv's interpreter, creating the venv if needed."""
    return _ensure("mpyc", MPYC_STEPS, "import mpyc; print(mpyc.__version__)", progress)
