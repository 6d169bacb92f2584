"""benchmarks/skill.py: issue 17's goal table, checked on pooled held-out numbers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from skill import goal_met

# the held-out film run's tp figures (docs/results/skill-heldout-film-cpu.json), rounded
TP = {
    "crps_oracle_ratio": 1.094,
    "ssr": 0.91,
    "edge_ratio": 1.20,
    "spectral": 0.098,
    "q999_rel_error": -0.11,  # the largest over the three worlds
}
MET = {
    "crps_oracle_ratio": 1.0,
    "ssr": 1.0,
    "edge_ratio": 1.0,
    "spectral": 0.01,
    "q999_rel_error": -0.02,
}


def test_goals_met_and_missed() -> None:
    assert all(goal_met("t2m", MET).values())
    assert goal_met("tp", TP) == {
        "crps_oracle": True,
        "ssr": False,
        "rank": False,
        "spectral": False,
        "q999": False,
    }


@pytest.mark.parametrize(
    ("key", "value", "goal"),
    [
        ("crps_oracle_ratio", 1.03, "crps_oracle"),  # 1.02 for t2m, 1.10 only for tp
        ("ssr", 0.94, "ssr"),
        ("ssr", 1.06, "ssr"),
        ("edge_ratio", 0.89, "rank"),
        ("edge_ratio", 1.11, "rank"),
        ("spectral", 0.06, "spectral"),
        ("q999_rel_error", -0.06, "q999"),
        ("q999_rel_error", 0.06, "q999"),
    ],
)
def test_each_goal_can_fail(key: str, value: object, goal: str) -> None:
    result = goal_met("t2m", {**MET, key: value})
    assert not result[goal]
    assert all(ok for name, ok in result.items() if name != goal)
