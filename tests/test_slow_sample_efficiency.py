"""DynaCallback() with no arguments, on one seed of each row of issue 14's suite: stock agents (rl-zoo settings) plus
one callback solve the real envs, and stay solved, in few real steps.

Slow (one to several minutes per run): excluded by default, run with `python3 -m pytest -m slow`. These are the
benchmark's own runs (`dream-envs bench`'s +dyna rows: the stock row plus `DynaCallback()`), on seed 0; the 5-seed
figures beside the stock agents are in docs/benchmarks.md. Each bar is the issue's: a per-seed bound where it sets
a worst seed, else its median bound, which a single seed must then meet. Rows measured to miss are strict xfails
that carry the measured figures.
"""

import pytest

from sb3_plugins.benchmark import plan_runs, run_one


def _missed(reason: str):
    return pytest.mark.xfail(strict=True, reason=reason)


BARS = [  # (env, algo, real steps to solved-and-stays-solved on seed 0)
    # measured (docs/benchmarks.md): seed 0 stays solved from 752 (seeds 0-4: 752, 752, 752, 1,000, 752); the
    # median target (<= 500) is missed, the worst-seed one (<= 1,000) met
    ("CartPole-v1", "ppo+dyna", 1000),
    pytest.param("CartPole-v1", "dqn+dyna", 1500, marks=_missed(
        "measured (docs/benchmarks.md): seed 0 passes at 250 real steps and swings between 54 and 500 after, never "
        "3 passing checks in a row within 5,000 (1 of 5 seeds stays solved, seed 3 from 2,000)")),
    ("Acrobot-v1", "ppo+dyna", 1000),
    pytest.param("Pendulum-v1", "sac+dyna", 600, marks=_missed(
        "measured (docs/benchmarks.md): seed 0 stays solved from 800 (seeds 0-4: 800, 600, 800, 1,000, 1,600)")),
    ("MountainCarContinuous-v0", "sac+dyna", 3000),  # measured: seed 0 stays solved from 2,000 (rl-zoo SAC: 18,000)
    ("InvertedDoublePendulum-v5", "sac+dyna", 6000),  # measured: seed 0 stays solved from 4,000 (SAC: 15,000)
    pytest.param("InvertedPendulum-v5", "sac+dyna", 1500, marks=_missed(
        "measured (docs/benchmarks.md): seed 0 stays solved from 2,500 (seed 1: 2,000; stock SAC 6,000, 12,500)")),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("env_id, algo, bar", BARS, ids=lambda v: str(v))
def test_dyna_callback_defaults_solve_and_stay_solved_in_few_real_steps(env_id, algo, bar):
    (spec,) = plan_runs(env_id, [algo], seeds=1, device="cpu")
    assert spec.hyperparams["dyna"] == {}  # DynaCallback() with no arguments
    record = run_one(spec)
    print(record["curve"], record["imagined_steps"], record["wall_seconds"])
    assert record["reward_termination"] == "learned"
    assert record["real_steps_to_stay_solved"] is not None, record["curve"]
    assert record["real_steps_to_stay_solved"] <= bar, record["curve"]
    assert record["imagined_steps"] > record["real_steps_to_stay_solved"]
