import math

import numpy as np
import pytest
import torch

from dream_envs import EnsembleDynamics
from dream_envs.envs.imagination import Imagination


def test_batched_step_contains_nonfinite_rows_only(cartpole_model_file):
    model = EnsembleDynamics.load(cartpole_model_file, device="cpu")
    imagination = Imagination(model, uncertainty_threshold=None)
    obs = imagination.start_states[:3].clone()
    obs[1] = torch.tensor([3e38, -3e38, 3e38, 0.0])  # finite, but the network overflows on it: only this row breaks
    step = imagination.step(obs, torch.tensor([0, 1, 0]), torch.Generator().manual_seed(0))
    assert step.nonfinite.tolist() == [False, True, False]
    assert step.cut_off.tolist() == [False, True, False]
    assert torch.isfinite(step.next_obs).all() and torch.isfinite(step.reward).all()
    assert math.isinf(step.uncertainty[1]) and math.isinf(step.disagreement[1]) and not step.terminated[1]


def test_next_obs_is_clipped_to_the_observation_space(cartpole_model):
    imagination = Imagination(cartpole_model, termination_fn="known")
    obs = torch.tensor([[4.79, 3.0, 0.0, 0.0]])
    step = imagination.step(obs, torch.tensor([1]), torch.Generator().manual_seed(0))
    assert step.next_obs[0, 0] <= 4.8 and step.terminated.item()


def test_start_states_from_a_buffer(cartpole_model, cartpole_buffer):
    imagination = Imagination(cartpole_model, start_states=cartpole_buffer)
    assert np.allclose(imagination.start_states.numpy(), cartpole_buffer.start_states())


def test_known_needs_an_env_id(cartpole_model_file):
    model = EnsembleDynamics.load(cartpole_model_file)
    model.env_id = None
    with pytest.raises(ValueError, match="needs env_id"):
        Imagination(model, reward_fn="known")


def test_an_unfitted_model_is_refused(cartpole_model):
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    fresh = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=2, num_elites=1, seed=0)
    fresh.start_states = cartpole_model.start_states
    with pytest.raises(ValueError, match="has not been fitted"):
        Imagination(fresh)
