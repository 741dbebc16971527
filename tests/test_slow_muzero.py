"""MuZero reaches CartPole-v1's threshold within 20,000 real steps on one seed, with the benchmark's own settings
(docs/benchmarks.md has 3 seeds beside stock PPO and DQN).

Slow (minutes): excluded by default, run with `python3 -m pytest -m slow`.
"""

import pytest

from sb3_plugins.benchmark import hyperparams_for, plan_runs, run_one


@pytest.mark.slow
def test_muzero_solves_cartpole_within_20k_real_steps():
    spec = plan_runs("CartPole-v1", ["muzero"], seeds=1, device="cpu")[0]
    assert spec.budget == 20_000 and spec.hyperparams == hyperparams_for("CartPole-v1", "muzero")
    record = run_one(spec)
    print(record["curve"], record["wall_seconds"])
    assert record["real_steps_to_threshold"] is not None, record["curve"]
