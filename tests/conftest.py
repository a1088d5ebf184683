"""Shared fixtures: the third-party data folder (read in place, or skipped) and generated PKIs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

SHARED_DATA = Path(os.environ.get("CHAINWARDEN_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_data_dir(*parts: str) -> Path:
    """The path inside ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"third-party test data not present at {path} (it is in CI's ../shared/data)")
    return path


def real_chain_cases() -> list[str]:
    base = SHARED_DATA / "real-chains"
    if not base.is_dir():
        return ["<absent>"]
    return sorted(p.name for p in base.iterdir() if (p / "case.json").exists())


def load_case(site: str) -> dict[str, object]:
    base = shared_data_dir("real-chains", site)
    case: dict[str, object] = json.loads((base / "case.json").read_text())
    case["dir"] = base
    return case


@pytest.fixture(scope="session")
def pki():
    """One generated three-tier PKI (root, intermediate, leaf for erp.example.test)."""
    from chainwarden.pkigen import three_tier

    return three_tier()
