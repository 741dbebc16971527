import gymnasium as gym
import numpy as np
import pytest
from conftest import checker_warnings

import dream_envs
from dream_envs import DREAM_IDS, EnsembleDynamics, ModelFileError, pretrained_model_path


@pytest.mark.parametrize("dream_id", sorted(DREAM_IDS))
def test_every_registered_id_passes_both_checkers(dream_id):
    dream_warnings = checker_warnings(gym.make(dream_id, uncertainty_threshold="auto", seed=0))
    # The only remarks allowed are the ones the real env earns too (its spaces are ours by design).
    assert dream_warnings <= checker_warnings(gym.make(DREAM_IDS[dream_id][0]))


@pytest.mark.parametrize("dream_id", sorted(DREAM_IDS))
def test_registered_ids_mirror_the_real_env(dream_id):
    real_id, max_steps, _ = DREAM_IDS[dream_id]
    dream, real = gym.make(dream_id), gym.make(real_id)
    assert dream.observation_space == real.observation_space
    assert dream.action_space == real.action_space
    assert dream.spec.max_episode_steps == real.spec.max_episode_steps == max_steps
    # The shipped model is small and holds real start states.
    assert pretrained_model_path(real_id).stat().st_size < 2_000_000
    assert len(dream.unwrapped.model.start_states) >= 10


@pytest.mark.parametrize("dream_id", sorted(DREAM_IDS))
def test_gym_make_seed_gives_reproducible_episodes(dream_id):
    def episode():
        env = gym.make(dream_id, seed=3)
        obs, _ = env.reset()
        env.action_space.seed(3)
        trace = [obs]
        for _ in range(20):
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            trace.append(np.append(obs, reward))
            if terminated or truncated:
                break
        return np.concatenate(trace)

    assert np.array_equal(episode(), episode())


@pytest.mark.parametrize("dream_id", sorted(DREAM_IDS))
def test_render_uses_the_real_renderer(dream_id):
    env = gym.make(dream_id, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8 and frame.std() > 0


def test_bad_gym_make_kwargs_fail_at_make_time(tmp_path):
    with pytest.raises(ValueError, match="uncertainty_threshold must be >= 0"):
        gym.make("Dream-CartPole-v0", uncertainty_threshold=-1.0)
    with pytest.raises(FileNotFoundError, match="model_path"):
        gym.make("Dream-CartPole-v0", model_path=tmp_path / "missing.pt")
    # A Pendulum model handed to the CartPole id: its spaces are not CartPole's.
    with pytest.raises(ModelFileError, match="observation space"):
        gym.make("Dream-CartPole-v0", model_path=pretrained_model_path("Pendulum-v1"))
    with pytest.raises(TypeError):
        gym.make("Dream-CartPole-v0", no_such_option=1)


def test_model_path_kwarg_loads_the_users_model(cartpole_model_file):
    env = gym.make("Dream-CartPole-v0", model_path=cartpole_model_file)
    reference = EnsembleDynamics.load(cartpole_model_file)
    for a, b in zip(env.unwrapped.model.state_dict().values(), reference.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy())


def test_unknown_dream_id_suggests_the_right_one():
    with pytest.raises(gym.error.Error, match="Dream-CartPole"):
        gym.make("Dream-CartPol-v0")


def test_registration_is_idempotent():
    before = {k for k in gym.registry if k.startswith("Dream-")}
    dream_envs.register_dream_envs()
    assert {k for k in gym.registry if k.startswith("Dream-")} == before == set(DREAM_IDS)


def test_unknown_shipped_model_is_a_clear_error():
    with pytest.raises(ValueError, match="no shipped model"):
        pretrained_model_path("Humanoid-v5")


def test_registered_ids_cut_off_by_default_and_can_turn_it_off():
    env = gym.make("Dream-CartPole-v0")
    assert env.unwrapped.uncertainty_threshold == pytest.approx(float(env.unwrapped.model.auto_threshold))
    assert gym.make("Dream-CartPole-v0", uncertainty_threshold=None).unwrapped.uncertainty_threshold is None
    assert gym.make("Dream-CartPole-v0", uncertainty_threshold=0.5).unwrapped.uncertainty_threshold == 0.5
