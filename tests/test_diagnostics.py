import gymnasium as gym
import numpy as np
import pytest

from dream_envs.diagnostics import k_step_error, real_segments


def test_k_step_error_grows_with_the_horizon(pendulum_model):
    errors = k_step_error(pendulum_model, gym.make("Pendulum-v1"), horizons=(10, 1), n_segments=50, seed=0)
    assert sorted(errors) == [1, 10] and errors[1].shape == (3,)
    assert np.all(errors[10] > errors[1])  # open-loop error compounds


def test_real_segments_are_contiguous_and_never_cross_an_episode_end():
    obs, actions = real_segments(gym.make("CartPole-v1"), length=5, n_segments=20, seed=0)
    assert obs.shape == (20, 6, 4) and actions.shape == (20, 5)
    # Replaying a segment's actions from its first state in the real env reproduces it exactly.
    env = gym.make("CartPole-v1").unwrapped
    env.reset(seed=0)
    env.state = obs[3, 0].astype(np.float64)
    for t in range(5):
        next_obs, *_ = env.step(int(actions[3, t]))
        assert np.allclose(next_obs, obs[3, t + 1], atol=1e-6)


def test_bad_inputs_are_named(cartpole_model, pendulum_model):
    with pytest.raises(ValueError, match="horizons"):
        k_step_error(cartpole_model, gym.make("CartPole-v1"), horizons=(0, 5))
    with pytest.raises(ValueError, match="differ"):
        k_step_error(pendulum_model, gym.make("CartPole-v1"))
    with pytest.raises(RuntimeError, match="episodes end too early"):
        real_segments(gym.make("CartPole-v1"), length=400, n_segments=2, seed=0, max_steps=2000)
