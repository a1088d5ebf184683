"""Code health as part of the suite: ruff over everything, strict mypy over the package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (it is in the test extras: pip install -e '.[test]')")
    return found


def test_ruff_is_clean():
    """ruff finds nothing in the package, the tests or the benchmarks."""
    targets = [t for t in ("daemon", "tests", "bench") if (REPO / t).exists()]
    proc = subprocess.run([_tool("ruff"), "check", *targets], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_is_clean():
    """mypy --strict (configured in pyproject.toml) finds nothing in the package."""
    proc = subprocess.run([_tool("mypy")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
