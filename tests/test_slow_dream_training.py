"""The foundation's promise, end to end: stock SB3 agents trained only in the shipped dreams work in reality.

Slow (minutes per run): excluded by default, run with `python3 -m pytest -m slow`.
Figures with wall times are in docs/dream_training.md (benchmarks/dream_training.py).
"""

import pytest

from sb3_plugins import train_in_dream


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ppo_trained_only_in_dream_cartpole_solves_real_cartpole(seed):
    result = train_in_dream("Dream-CartPole-v0", "ppo", 100_000, seed=seed, device="cpu")
    print(result)
    assert result.real_mean >= 475, result


@pytest.mark.slow
def test_sac_trained_only_in_dream_pendulum_swings_up_real_pendulum():
    result = train_in_dream("Dream-Pendulum-v0", "sac", 20_000, seed=0, device="cpu")
    print(result)
    assert result.real_mean >= -250, result


@pytest.mark.slow
def test_ppo_trained_only_in_dream_acrobot_reaches_the_real_threshold():
    result = train_in_dream("Dream-Acrobot-v0", "ppo", 100_000, seed=0, device="cpu")
    print(result)
    assert result.real_mean >= -100, result
