"""World Models reaches the pixel CartPole target on seed 0 (docs/world_models.md has 3 seeds; the settings are
benchmarks/world_models.py's). Seed 0 reaches it only at the last check (20,000 frames): about 15 minutes on one
core.

Slow: excluded by default, run with `python3 -m pytest -m slow`.
"""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "world_models_benchmark", Path(__file__).resolve().parents[1] / "benchmarks" / "world_models.py"
)
benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark)


@pytest.mark.slow
def test_controller_trained_only_in_the_dream_solves_pixel_cartpole_within_20000_frames():
    record = benchmark.run_seed(0)
    print(record["curve"])
    assert record["frames_used"] <= benchmark.BUDGET
    assert record["reached"] and record["real_return"] >= benchmark.THRESHOLD, record["curve"]
