"""docs/benchmarks.md's return targets (issue 14's Reacher and HalfCheetah rows), on hand-made records."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("rliable", reason="the page summarises with rliable (the bench extra)")

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("benchmarks_page", ROOT / "benchmarks" / "benchmarks_page.py")
page = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(page)


def run(env: str, algo: str, seed: int, curve: list[tuple[int, float]]) -> dict:
    return {"env": env, "algo": algo, "seed": seed, "curve": [list(point) for point in curve]}


def row(records: list[dict], env: str) -> str:
    return next(line for line in page._return_targets(records) if line.startswith(f"| {env} "))


def test_reach_is_the_median_first_check_at_the_stock_bar_within_the_budget():
    stock = [
        run("Reacher-v5", "sac", s, [(5_000, -9.0), (20_000, value)]) for s, value in enumerate((-6.0, -5.0, -7.0))
    ]
    # the bar is the stock median at 20,000: -6.0; the +dyna runs reach it at 3,000, 5,000 and never
    dyna = [run("Reacher-v5", "sac+dyna", 0, [(1_000, -9.0), (3_000, -6.0)]),
            run("Reacher-v5", "sac+dyna", 1, [(3_000, -6.5), (5_000, -4.0)]),
            run("Reacher-v5", "sac+dyna", 2, [(5_000, -8.0), (6_000, -3.0)])]  # fmt: skip
    line = row(stock + dyna, "Reacher-v5")
    assert "bar -6.00 (median of 3 stock runs) | 5,000 real steps | 3 | yes |" in line
    dyna[1]["curve"] = [[5_000, -6.1]]  # now only one run of three reaches it: the median is never
    assert "| not within 5,000 | 3 | NO |" in row(stock + dyna, "Reacher-v5")


def test_return_at_compares_the_median_with_a_multiple_of_the_stock_median():
    stock = [run("HalfCheetah-v5", "sac", s, [(30_000, value)]) for s, value in enumerate((870.0, 3.0, 698.0))]
    dyna = [
        run("HalfCheetah-v5", "sac+dyna", s, [(30_000, value)]) for s, value in enumerate((1_100.0, 900.0, 2_000.0))
    ]
    assert "bar 1,047.00 (median of 3 stock runs) | 1,100.00 | 3 | yes |" in row(stock + dyna, "HalfCheetah-v5")
    assert "| 1,000.00 | 2 | NO |" in row(stock + dyna[:2], "HalfCheetah-v5")
    assert "not run (3 stock, 0 +dyna runs)" in row(stock, "HalfCheetah-v5")
    dyna[0]["curve"] = [[25_000, 1.0]]  # stopped before the check the target is at
    assert "runs without a check at 30,000" in row(stock + dyna, "HalfCheetah-v5")
