import gymnasium as gym
import numpy as np
import pytest
import torch

from dream_envs import KNOWN_REWARDS, KNOWN_TERMINATIONS, TransitionBuffer
from dream_envs.models.task_functions import resolve_task_fn


@pytest.mark.parametrize("env_id", sorted(KNOWN_REWARDS))
def test_known_functions_match_the_real_env(env_id):
    env = gym.make(env_id)
    buffer = TransitionBuffer.from_env(env).collect(env, 3000, seed=0)
    data = buffer.transitions()
    obs, action, next_obs = (torch.as_tensor(x) for x in (data.obs, data.action, data.next_obs))
    reward = KNOWN_REWARDS[env_id](obs, action, next_obs).numpy()
    terminated = KNOWN_TERMINATIONS[env_id](obs, action, next_obs).numpy()
    assert np.allclose(reward, data.reward, atol=1e-4)
    assert np.array_equal(terminated, data.terminated)


def test_acrobot_goal_is_reached_in_a_hand_made_state():
    # theta1 = pi (link 1 straight up), theta2 = 0: the tip is 2 links above the pivot, past the goal line.
    up = torch.tensor([[-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]])
    assert KNOWN_TERMINATIONS["Acrobot-v1"](up, torch.tensor([0]), up).item()
    assert KNOWN_REWARDS["Acrobot-v1"](up, torch.tensor([0]), up).item() == 0.0


def test_resolve_task_fn():
    assert resolve_task_fn(None, KNOWN_REWARDS, "reward_fn") is None
    assert resolve_task_fn("learned", KNOWN_REWARDS, "reward_fn") is None
    assert resolve_task_fn("Pendulum-v1", KNOWN_REWARDS, "reward_fn") is KNOWN_REWARDS["Pendulum-v1"]
    with pytest.raises(ValueError, match="known ids"):
        resolve_task_fn("Nope-v0", KNOWN_REWARDS, "reward_fn")
    with pytest.raises(TypeError, match="reward_fn"):
        resolve_task_fn(3, KNOWN_REWARDS, "reward_fn")
