"""Shared fixtures: where the real data lives, and a temporary runs root.

The real-data tests read ``$BALPM_SHARED_DATA`` (default ``../shared/data`` beside the checkout).
Outside CI they are skipped when it is missing; in CI (``CI=true``) a missing folder fails them.
"""
from __future__ import annotations

import os
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a 2-core machine shared with a streamlit server
# or a second process, spinning threads made small torch calls 4-6x slower. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    env = os.environ.get("BALPM_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder holding summarize_from_feedback/ (fails in CI, skips elsewhere, when absent)."""
    path = _shared_data_dir()
    if not (path / "summarize_from_feedback" / "comparisons").is_dir():
        msg = f"real data not found at {path}; set BALPM_SHARED_DATA to the shared data folder"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def comparisons_dir(shared_data: Path) -> Path:
    """OpenAI's comparison JSON-lines files."""
    return shared_data / "summarize_from_feedback" / "comparisons"
