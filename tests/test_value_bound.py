"""The value bound on DQN-like agents' bootstrapped targets (sb3_plugins.value_bound) and DynaCallback's use of it."""

import inspect

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import QRDQN
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecNormalize

from sb3_plugins import DynaCallback
from sb3_plugins.value_bound import (
    BoundedTarget,
    bounded_targets,
    real_reward_extremes,
    target_network_names,
    value_range,
)


@pytest.mark.parametrize(
    "rewards, gamma, expected",
    [
        (np.ones(10), 0.99, (0.0, 100.0)),  # CartPole: every return is in [0, 100]
        (np.array([-16.3, -0.2]), 0.9, (-163.0, 0.0)),  # Pendulum-like costs
        (np.array([-1.0, 2.0]), 0.5, (-2.0, 4.0)),
        (np.array([3.0, 5.0]), 0.0, (0.0, 5.0)),  # one step: an episode that ends at once returns 0
    ],
)
def test_value_range_holds_every_return(rewards, gamma, expected):
    low, high = value_range(rewards, gamma)
    assert (low, high) == pytest.approx(expected)
    # any discounted sum of these rewards, ended at any step, falls inside
    rng = np.random.default_rng(0)
    for _ in range(200):
        steps = rng.integers(0, 60)
        sample = rng.choice(rewards, size=steps)
        ret = float(np.sum(sample * gamma ** np.arange(steps)))
        assert low - 1e-9 <= ret <= high + 1e-9


@pytest.mark.parametrize("rewards, gamma", [(np.zeros(0), 0.99), (np.ones(3), 1.0), (np.array([1.0, np.nan]), 0.9)])
def test_no_bound_without_rewards_discount_or_finite_rewards(rewards, gamma):
    assert value_range(rewards, gamma) is None


def test_bounded_target_clips_and_counts():
    target = torch.nn.Linear(3, 2)
    with torch.no_grad():
        target.weight.zero_()
        target.bias.copy_(torch.tensor([500.0, 50.0]))
    bounded = BoundedTarget(target, 0.0, 100.0)
    values = bounded(torch.zeros(4, 3))
    assert torch.equal(values, torch.tensor([[100.0, 50.0]] * 4))
    assert (bounded.clipped, bounded.seen) == (4, 8)
    assert list(bounded.parameters()) == list(target.parameters())  # a sync through it reaches the target itself


def _dqn(**kwargs):
    return DQN("MlpPolicy", "CartPole-v1", learning_starts=0, batch_size=16, seed=0, device="cpu", **kwargs)


def test_bounded_targets_act_on_train_and_always_restore():
    agent = _dqn().learn(64)
    original = agent.q_net_target
    with torch.no_grad():  # a diverged target network: every value far past what CartPole's rewards allow
        agent.q_net_target.q_net[-1].bias.fill_(1e4)
    agent.train(gradient_steps=1, batch_size=16)
    unbounded_loss = agent.logger.name_to_value["train/loss"]
    with bounded_targets(agent, 0.0, 100.0) as bounded:
        assert agent.q_net_target is bounded[0] and bounded[0].target is original
        agent.train(gradient_steps=1, batch_size=16)
    bounded_loss = agent.logger.name_to_value["train/loss"]
    assert agent.q_net_target is original
    # Huber loss ~ |Q - target|: the targets were 1 + 0.99 * 1e4 unbounded, at most 1 + 99 bounded
    assert unbounded_loss > 9_000 and bounded_loss < 101
    assert bounded[0].clipped == bounded[0].seen == 16 * 2
    with pytest.raises(RuntimeError, match="inside"):
        with bounded_targets(agent, 0.0, 100.0):
            raise RuntimeError("inside")
    assert agent.q_net_target is original


def test_target_networks_of_dqn_and_qrdqn():
    assert target_network_names(_dqn()) == ["q_net"]
    qrdqn = QRDQN("MlpPolicy", "CartPole-v1", learning_starts=0, batch_size=8, seed=0, device="cpu").learn(32)
    assert target_network_names(qrdqn) == ["quantile_net"]
    with bounded_targets(qrdqn, 0.0, 1.0) as bounded:
        qrdqn.train(gradient_steps=2, batch_size=8)
    assert bounded[0].seen == 2 * 8 * qrdqn.policy.n_quantiles * 2


def test_real_reward_extremes_are_in_the_units_train_sees():
    env = VecNormalize(make_vec_env("CartPole-v1", n_envs=1, seed=0), norm_obs=False, norm_reward=True)
    agent = DQN("MlpPolicy", env, learning_starts=0, seed=0, device="cpu").learn(200)
    stored = agent.replay_buffer.rewards[: agent.replay_buffer.pos].ravel()
    assert np.allclose(stored, 1.0)  # SB3 stores the raw rewards and normalises them when it samples
    seen = real_reward_extremes(agent)
    normalized = env.normalize_reward(stored)
    assert np.allclose(seen, [normalized.min(), normalized.max()]) and not np.allclose(seen, 1.0)


def test_real_reward_extremes_are_the_buffer_s_least_and_greatest():
    agent = DQN("MlpPolicy", "CartPole-v1", learning_starts=0, buffer_size=50, seed=0,
                device="cpu")  # fmt: skip
    assert real_reward_extremes(agent).size == 0 and value_range(real_reward_extremes(agent), 0.99) is None
    agent.learn(80)  # the 50-row buffer wraps: every row counts, not only those before pos
    agent.replay_buffer.rewards[:] = np.linspace(-3.0, 2.0, 50, dtype=np.float32).reshape(50, 1)
    assert agent.replay_buffer.full and agent.replay_buffer.pos != 0
    assert real_reward_extremes(agent).tolist() == [-3.0, 2.0]
    agent.replay_buffer.rewards[7] = np.nan
    assert value_range(real_reward_extremes(agent), 0.99) is None


_SMALL = {"model_train_freq": 100, "min_real_steps": 64, "fit_kwargs": {"max_epochs": 5},
          "ensemble_kwargs": {"hidden_sizes": (32,)}, "rollout_batch_size": 50, "utd_ratio": 4, "seed": 0,
          "trust_errors": None}  # fmt: skip


@pytest.mark.parametrize("value_bound", [True, False])
def test_dyna_callback_bounds_the_extra_steps_only(value_bound):
    agent = DQN("MlpPolicy", gym.make("CartPole-v1"), learning_starts=100, train_freq=50, gradient_steps=10,
                target_update_interval=10, batch_size=16, seed=0, device="cpu")  # fmt: skip
    original = agent.q_net_target
    with torch.no_grad():
        original.q_net[-1].bias.fill_(1e4)
    bounded_calls = []
    agent.train = _spy(agent, bounded_calls)
    logged = {}
    dyna = DynaCallback(**_SMALL, value_bound=value_bound)
    agent.set_logger(configure(None, []))  # a logger of the user's own, kept by learn(), noting what goes through
    record = agent.logger.record
    agent.logger.record = lambda key, value, *args, **kwargs: (logged.__setitem__(key, value), record(key, value))
    agent.learn(400, callback=dyna)
    assert agent.q_net_target is original
    extra = [bounded for own, bounded in bounded_calls if not own]
    assert extra and all(bounded == value_bound for bounded in extra)
    assert not any(bounded for own, bounded in bounded_calls if own)  # the agent's own steps are SB3's, unchanged
    if value_bound:
        assert 0.0 < logged["dyna/target_values_clipped"] <= 1.0
    else:
        assert "dyna/target_values_clipped" not in logged


def _spy(agent, calls):
    """Wrap agent.train to note, per call, whether DynaCallback made it and whether the target was bounded."""
    train = agent.train

    def spied(gradient_steps, batch_size=100):
        own = not any(frame.function == "_train_agent" for frame in inspect.stack())
        calls.append((own, isinstance(agent.q_net_target, BoundedTarget)))
        return train(gradient_steps=gradient_steps, batch_size=batch_size)

    return spied
