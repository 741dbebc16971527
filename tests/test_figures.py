"""The library draws its figures without touching the user's matplotlib state: no backend switch, no pyplot figure
left open (a notebook's inline backend must survive writing a benchmark report)."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import pytest

from dream_envs.io import save_figure
from sb3_plugins.benchmark import write_report
from sb3_plugins.diagnose import diagnose_model, load_diagnosed_model


@pytest.fixture
def svg_backend():
    """A backend the library would never pick itself: any switch to Agg shows."""
    before = matplotlib.get_backend()
    plt.close("all")
    matplotlib.use("svg")
    yield
    matplotlib.use(before)


def _curve_records() -> list[dict]:
    base = {"format": "dream-envs-bench/1", "env": "CartPole-v1", "budget": 1000, "threshold": 475.0,
            "wall_seconds": 1.0, "imagined_steps": 0, "reward_termination": "real env"}  # fmt: skip
    return [{**base, "algo": "ppo", "seed": s, "real_steps_to_threshold": None, "real_steps_to_stay_solved": None,
             "curve": [[250, 20.0 + s], [500, 30.0]], "final_return": 30.0} for s in range(2)]  # fmt: skip


def test_benchmark_report_keeps_the_users_backend(tmp_path, svg_backend):
    paths = write_report(tmp_path, _curve_records())
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    assert matplotlib.get_backend() == "svg"
    assert plt.get_fignums() == []  # nothing left in pyplot's registry


def test_diagnostics_plots_keep_the_users_backend(tmp_path, svg_backend):
    model, env_id = load_diagnosed_model("Dream-Pendulum-v0", None, "cpu")
    diagnose_model(model, env_id, tmp_path, horizons=(1, 3), max_horizon=3, n_segments=40, calibration_horizon=3)
    for name in ("Pendulum-v1_compounding.png", "Pendulum-v1_calibration.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert matplotlib.get_backend() == "svg"
    assert plt.get_fignums() == []


def test_save_figure_writes_a_bare_figure_and_closes_a_pyplot_one(tmp_path, svg_backend):
    from matplotlib.figure import Figure

    bare = Figure()
    bare.subplots().plot([0, 1], [1, 0])
    save_figure(bare, tmp_path / "bare.png")
    managed = plt.figure()
    save_figure(managed, tmp_path / "managed.png")
    assert (tmp_path / "bare.png").read_bytes()[:4] == (tmp_path / "managed.png").read_bytes()[:4] == b"\x89PNG"
    assert plt.get_fignums() == [] and matplotlib.get_backend() == "svg"
