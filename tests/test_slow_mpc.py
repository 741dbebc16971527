"""PETS reaches the MPC targets on one seed each (docs/mpc.md has 5 seeds; the settings are benchmarks/mpc.py's).

Slow (minutes): excluded by default, run with `python3 -m pytest -m slow`.
"""

import pytest

from dream_envs.agents import MPCAgent
from sb3_plugins import RealStepsToThreshold
from sb3_plugins.benchmark import plan_runs, run_one

# The rows of docs/mpc.md measured before issue 14 changed MPCAgent's defaults, with the settings they had.
SMALL = dict(population=200, iterations=3, particles=5, learning_starts=200, train_freq=200, gamma=1.0,
             terminal_value=False, random_noise_beta=0.0,
             fit_kwargs={"max_epochs": 300, "patience": 20, "batch_size": 32},
             ensemble_kwargs={"hidden_sizes": (128, 128)}, device="cpu", seed=0)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "env_id, threshold, budget, options",
    [
        # Pink-noise random actions before the first fit: 5/5 seeds (white noise: 4/5).
        ("Pendulum-v1", -200.0, 600, dict(horizon=30, random_noise_beta=1.0)),
        pytest.param(
            "CartPole-v1",
            475.0,
            400,
            dict(horizon=15),
            marks=pytest.mark.xfail(
                strict=True,
                reason=(
                    "measured: 0/5 seeds reach 475 within 400 real steps (81-111, docs/mpc.md); the termination "
                    "head learned from ~9 terminal transitions misses half of the real terminations"
                ),
            ),
        ),
        # A value learned in the model beyond the 15-step horizon: 5/5 seeds with the termination known (all at
        # 200 real steps) and learned (by 400).
        ("CartPole-v1", 475.0, 400, dict(horizon=15, termination_fn="known", gamma=0.98, terminal_value=True)),
        ("CartPole-v1", 475.0, 400, dict(horizon=15, gamma=0.98, terminal_value=True)),
    ],
)
def test_pets_reaches_the_threshold_in_few_real_steps(env_id, threshold, budget, options):
    check = RealStepsToThreshold(env_id, threshold, every=200, n_episodes=5, seed=10_000)
    agent = MPCAgent(env_id, **{**SMALL, **options})
    agent.learn(budget, callback=check)
    print(check.curve)
    assert agent.reward_fn is None  # the reward is always learned
    assert check.hit is not None and check.hit <= budget, check.curve


@pytest.mark.slow
@pytest.mark.parametrize(
    "env_id, target",
    [
        ("CartPole-v1", 400),  # measured: seed 0 stays solved from 200 (dream-envs bench, docs/benchmarks.md)
        ("Pendulum-v1", 400),  # measured: seed 0 stays solved from 200 (dream-envs bench, docs/benchmarks.md)
        pytest.param("InvertedPendulum-v5", 1000, marks=pytest.mark.xfail(strict=True, reason=(
            "measured (docs/benchmarks.md, dream-envs bench's mpc row): seed 0 not solved within its 2,000 real "
            "steps (37, 38, 44, 70, 66, 86, 110, 188, 204, 333 at checks every 200)"))),
    ],
)  # fmt: skip
def test_mpc_agent_with_no_arguments_solves_and_stays_solved(env_id, target):
    # issue 14: MPCAgent(env) is the product; the benchmark's mpc row on seed 0 (10 episodes per check, every 200)
    (spec,) = plan_runs(env_id, ["mpc"], seeds=1, device="cpu")
    assert spec.hyperparams["agent"] == {}  # MPCAgent(env) with no arguments
    record = run_one(spec)
    print(record["curve"], record["wall_seconds"])
    assert record["reward_termination"] == "learned"
    assert record["real_steps_to_stay_solved"] is not None, record["curve"]
    assert record["real_steps_to_stay_solved"] <= target, record["curve"]
