"""A run as :func:`balpm.evidence.stats.evidence` reads it (its ``RunLike`` protocol), for tests that build
learning curves by hand (test_stats, test_power, test_story) instead of reading run folders."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Run:
    run_id: str
    label: str
    policy: str
    seed: int
    setting: str
    rounds: pd.DataFrame
    truth: dict | None = None
