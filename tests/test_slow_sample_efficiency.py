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
    # measured (docs/benchmarks.md): seed 0 stays solved from 256 (seeds 0-4: 256, 256, 256, 1,000, 504); the
    # worst-seed bound (<= 1,000) is the one a single seed must meet
    ("CartPole-v1", "ppo+dyna", 1000),
    pytest.param("CartPole-v1", "dqn+dyna", 1500, marks=_missed(
        "measured (docs/benchmarks.md): seed 0 passes first at 500 real steps and swings between 39 and 500 after, "
        "staying solved from 3,250 (1 of 5 seeds stays solved within 5,000)")),
    ("Acrobot-v1", "ppo+dyna", 1000),
    # measured (docs/benchmarks.md): seed 0 stays solved from 600 (seeds 0-4: 600, 800, 400, 800, 1,400; the median
    # target, <= 600, is missed)
    ("Pendulum-v1", "sac+dyna", 600),
    # measured (docs/benchmarks.md): seed 0 stays solved from 2,000 (seeds 0-4: 2,000, 5,000, 3,000, 6,000, 6,000;
    # the median target, <= 3,000, is missed; rl-zoo SAC: 18,000 on seed 0)
    ("MountainCarContinuous-v0", "sac+dyna", 3000),
    pytest.param("InvertedDoublePendulum-v5", "sac+dyna", 6000, marks=_missed(
        "measured (docs/benchmarks.md, rerun with rewards of their kind): seed 0 passes first at 4,000 real steps, "
        "then one or two of the 10 check episodes fall at 6,000, 9,000, 12,000 and 14,000, so it never holds 3 "
        "checks in a row within 15,000 (before rewards of their kind: stays solved from 4,000; stock SAC 15,000); "
        "seeds 0-4: none, 5,000, 5,000, none, 5,000 (the median target, <= 6,000, is met)")),
    # measured (docs/benchmarks.md): seed 0 stays solved from 1,500 (seeds 0-4: 1,500, 1,500, 1,500, 1,500, 2,500;
    # the median target, <= 1,500, is met; stock SAC 13,000 median)
    ("InvertedPendulum-v5", "sac+dyna", 1500),
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
