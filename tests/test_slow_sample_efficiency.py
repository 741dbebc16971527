"""DynaCallback's promise on one seed each: stock agents + one callback solve the real envs in few real steps.

Slow (one to three minutes per run): excluded by default, run with `python3 -m pytest -m slow`. These are the
benchmark's own runs (`dream-envs bench`'s defaults for each +dyna row), on seed 0; the 5-seed figures beside
the stock agents are in docs/benchmarks.md. Each bar is the issue's: a per-seed bound where it sets a worst
seed, else its median bound, which a single seed must then meet.
"""

import pytest

from sb3_plugins.benchmark import plan_runs, run_one

BARS = {  # (env, algo): real steps to threshold on seed 0
    ("CartPole-v1", "ppo+dyna"): 1500,
    ("CartPole-v1", "dqn+dyna"): 3000,
    ("Acrobot-v1", "ppo+dyna"): 3000,
    ("Pendulum-v1", "sac+dyna"): 1000,
}


@pytest.mark.slow
@pytest.mark.parametrize("env_id, algo", sorted(BARS), ids=lambda v: v)
def test_dyna_solves_the_real_env_in_few_real_steps(env_id, algo):
    (spec,) = plan_runs(env_id, [algo], seeds=1, device="cpu")
    record = run_one(spec)
    print(record["curve"], record["imagined_steps"], record["wall_seconds"])
    assert record["reward_termination"] == "learned"
    assert record["real_steps_to_threshold"] is not None, record["curve"]
    assert record["real_steps_to_threshold"] <= BARS[(env_id, algo)], record["curve"]
    assert record["imagined_steps"] > record["real_steps_to_threshold"]
