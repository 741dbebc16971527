"""Issue 16: DynaCallback serves SB3 algorithms by mechanism (sb3-contrib's too), under VecNormalize, with the
agent's seed, without touching the agent's own settings."""

from __future__ import annotations

import numpy as np
import pytest
from sb3_contrib import ARS, QRDQN, TQC, TRPO, CrossQ, MaskablePPO, RecurrentPPO
from stable_baselines3 import DDPG, PPO, SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_plugins import DynaCallback

SMALL = {"ensemble_kwargs": {"hidden_sizes": (16,)}, "fit_kwargs": {"max_epochs": 2}, "model_train_freq": 100,
         "min_real_steps": 32, "rollout_batch_size": 32, "n_dream_envs": 4, "dream_rollouts": 1, "utd_ratio": 2,
         "trust_errors": None}  # fmt: skip


@pytest.mark.parametrize(
    "make",
    [
        lambda: TQC("MlpPolicy", "Pendulum-v1", learning_starts=50, seed=0, device="cpu"),
        # CrossQ's own critics are 2 x 2,048 wide: small ones keep the test in seconds
        lambda: CrossQ(
            "MlpPolicy",
            "Pendulum-v1",
            learning_starts=50,
            seed=0,
            device="cpu",
            policy_kwargs={"net_arch": {"pi": [64, 64], "qf": [64, 64]}},
        ),
        lambda: QRDQN("MlpPolicy", "CartPole-v1", learning_starts=50, target_update_interval=50, seed=0, device="cpu"),
        lambda: TRPO("MlpPolicy", "CartPole-v1", n_steps=128, batch_size=64, seed=0, device="cpu"),
        lambda: DDPG("MlpPolicy", "Pendulum-v1", learning_starts=50, seed=0, device="cpu"),  # a TD3 subclass
    ],
    ids=["TQC", "CrossQ", "QRDQN", "TRPO", "DDPG"],
)
def test_sb3_contrib_algorithms_are_served_by_mechanism(make):
    agent = make()
    dyna = DynaCallback(**SMALL)
    agent.learn(256, callback=dyna)
    # fits at 32, 48, 72, 108, 162 and 243 real steps (refit_growth 0.5, then every 100)
    assert agent.num_timesteps == 256 and dyna.model_fits == 6 and dyna.imagined_steps > 0
    if hasattr(agent, "replay_buffer"):  # off-policy: the dream was in the batches, and is out of them now
        assert len(agent.replay_buffer.imagined) > 0 and agent.replay_buffer.real_ratio == 1.0


def test_qrdqn_extra_steps_sync_its_quantile_target_network():
    agent = QRDQN("MlpPolicy", "CartPole-v1", learning_starts=50, train_freq=4, gradient_steps=1,
                  target_update_interval=8, seed=0, device="cpu")  # fmt: skip
    dyna = DynaCallback(**{**SMALL, "utd_ratio": 4})
    agent.learn(120, callback=dyna)
    assert dyna._epsilon_greedy and dyna._extra_steps == 15  # 4 x 4 real steps a rollout: its own 1, and 15 more
    online, target = agent.quantile_net, agent.quantile_net_target
    for parameter in online.parameters():
        parameter.data.add_(1.0)
    dyna._dqn_steps_since_sync = 0
    dyna._train_agent(dyna._dqn_steps_per_target())  # one whole piece: a sync at its end
    for a, b in zip(online.parameters(), target.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ARS("MlpPolicy", "Pendulum-v1", seed=0, device="cpu"), "ARS is neither"),
        (
            lambda: RecurrentPPO("MlpLstmPolicy", "CartPole-v1", n_steps=64, batch_size=64, device="cpu"),
            "recurrent policy",
        ),
        (lambda: MaskablePPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, device="cpu"), "action-masking"),
    ],
    ids=["ARS", "RecurrentPPO", "MaskablePPO"],
)
def test_algorithms_it_cannot_serve_are_refused_before_any_real_step(make, match):
    agent = make()
    with pytest.raises(TypeError, match=match):
        DynaCallback(**SMALL).check_agent(agent)
    if not isinstance(agent, ARS):
        with pytest.raises(TypeError, match=match):
            agent.learn(64, callback=DynaCallback(**SMALL))
        assert agent.num_timesteps == 0
    # rl-zoo ends a run in a `finally` that calls on_training_end: the refusal must stay the error the user sees
    refused = DynaCallback(**SMALL)
    with pytest.raises(TypeError, match=match):
        refused.init_callback(agent)
    refused.on_training_end()


@pytest.mark.parametrize("algo", [PPO, SAC])
def test_under_vecnormalize_the_model_learns_raw_units_and_the_agent_sees_normalised_ones(algo):
    env_id = "Pendulum-v1"
    venv = VecNormalize(make_vec_env(env_id, n_envs=2, seed=0), gamma=0.9)
    kwargs = {"n_steps": 64, "batch_size": 64, "n_epochs": 2} if algo is PPO else {"learning_starts": 50}
    agent = algo("MlpPolicy", venv, seed=0, device="cpu", **kwargs)
    dyna = DynaCallback(**SMALL)
    seen = []
    original_train = agent.train
    if algo is SAC:

        def train(gradient_steps, batch_size=64):  # what the agent's updates see, real and imagined rows together
            seen.append(agent.replay_buffer.sample(256, env=agent.get_vec_normalize_env()).observations)
            return original_train(gradient_steps=gradient_steps, batch_size=batch_size)

        agent.train = train
    agent.learn(448, callback=dyna)  # 224 steps per env: one 200-step episode each ends
    assert dyna.model_fits >= 2 and dyna.imagined_steps > 0
    data = dyna.real.transitions()
    # Pendulum's raw observation is (cos, sin, angular velocity in [-8, 8]): raw, not normalised, in the model's data
    np.testing.assert_allclose(data.obs[:, 0] ** 2 + data.obs[:, 1] ** 2, 1.0, atol=1e-5)
    assert data.reward.max() <= 0.0 and data.reward.min() >= -16.3  # Pendulum's own reward range
    terminal = data.truncated  # Pendulum's time limit ends episodes: their last observation was un-normalised
    assert terminal.sum() == 2 and np.allclose(data.next_obs[terminal, 0] ** 2 + data.next_obs[terminal, 1] ** 2, 1.0,
                                               atol=1e-4)  # fmt: skip
    if algo is SAC:  # the imagined rows reach the agent normalised like the real ones (no row on the unit circle)
        rows = np.concatenate([batch.numpy() for batch in seen[-3:]])
        assert not np.allclose(rows[:, 0] ** 2 + rows[:, 1] ** 2, 1.0, atol=1e-3)
        assert np.abs(rows).max() <= venv.clip_obs


def test_the_agents_seed_reaches_the_callback_and_its_settings_are_left_alone():
    runs = []
    for seed in (3, 3, 4):
        agent = SAC("MlpPolicy", "Pendulum-v1", learning_starts=50, gradient_steps=3, train_freq=2, seed=seed,
                    policy_kwargs={"net_arch": [32]}, device="cpu")  # fmt: skip
        dyna = DynaCallback(**{**SMALL, "utd_ratio": 4})
        agent.learn(120, callback=dyna)
        assert dyna.seed == seed and agent.gradient_steps == 3  # the user's gradient steps, never replaced
        assert dyna._extra_steps == 4 * 2 - 3  # utd 4 x 2 real steps a rollout: the agent's 3, and 5 more
        runs.append(dyna.dynamics.state_dict()["hidden.0.weight"].clone())
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])
