"""World Models: the pixel wrapper, V, M, the dream (gymnasium and batched), CMA-ES in the dream, and the agent."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy

from dream_envs import ModelFileError
from dream_envs.agents import WorldModels
from dream_envs.agents.world_models import (
    MDNRNN,
    ConvVAE,
    DreamState,
    LatentDream,
    LatentDreamEnv,
    LatentSequences,
    LinearController,
    dream_returns,
    fit_mdn_rnn,
    fit_vae,
    train_controller,
)
from dream_envs.envs import PixelObservation

TINY = dict(latent_size=4, hidden_size=8, n_mixtures=2, vae_channels=(4, 8, 8, 16), frames_per_iteration=100,
            vae_epochs=1, mdn_epochs=1, cma_generations=2, cma_popsize=4, dream_episodes=2, max_dream_steps=10,
            device="cpu")  # fmt: skip


def pixel_cartpole() -> PixelObservation:
    return PixelObservation(gym.make("CartPole-v1", render_mode="rgb_array"))


@pytest.fixture(scope="module")
def cartpole_frames() -> np.ndarray:
    env = pixel_cartpole()
    frames = [env.reset(seed=0)[0]]
    for _ in range(47):
        obs, _, terminated, truncated, _ = env.step(int(env.np_random.integers(2)))
        frames.append(obs if not (terminated or truncated) else env.reset()[0])
    return np.stack(frames)


@pytest.fixture(scope="module")
def trained_agent() -> WorldModels:
    return WorldModels("CartPole-v1", seed=0, **TINY).learn(200)


# ---------------------------------------------------------------------- pixels
def test_pixel_observation_is_a_64x64_rgb_frame():
    env = pixel_cartpole()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    assert obs.min() < 100 and obs.max() > 200  # the dark cart on the white background survived the resize
    obs, *_ = env.step(0)
    assert obs.shape == (64, 64, 3)


def test_read_only_frames_become_tensors_without_torch_warning_and_unchanged():
    import warnings

    from dream_envs.agents.world_models.vae import frames_to_tensor

    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    frames.flags.writeable = False  # as PixelObservation's frames come
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "The given NumPy array is not writable" was a UserWarning
        tensor = frames_to_tensor(frames)
    assert tensor.shape == (2, 3, 64, 64) and torch.equal(tensor.mul(255).round().byte().permute(0, 2, 3, 1),
                                                           torch.from_numpy(frames.copy()))  # fmt: skip


def test_pixel_observation_names_the_missing_render_mode():
    with pytest.raises(ValueError, match=r"render_mode=None.*render_mode='rgb_array'"):
        PixelObservation(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="size"):
        PixelObservation(gym.make("CartPole-v1", render_mode="rgb_array"), size=2)


# ---------------------------------------------------------------------- V and M
def test_vae_reconstruction_loss_decreases(cartpole_frames):
    vae = ConvVAE(latent_size=4, channels=(4, 8, 8, 16), seed=0)
    history = fit_vae(vae, cartpole_frames, epochs=15, batch_size=8, generator=torch.Generator().manual_seed(0))
    assert history[-1].reconstruction < 0.8 * history[0].reconstruction, history
    mu, logvar = vae.encode(cartpole_frames[:3])
    assert mu.shape == logvar.shape == (3, 4)
    assert vae.decode(mu).shape == (3, 3, 64, 64)


def test_vae_rejects_frames_of_another_size():
    with pytest.raises(ValueError, match="64 x 64"):
        ConvVAE(latent_size=4, channels=(4, 8, 8, 16)).encode(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="channels"):
        ConvVAE(latent_size=4, channels=(4, 8))


def synthetic_sequences(n: int = 8, steps: int = 12) -> LatentSequences:
    """z follows a rotation driven by the action; the episode terminates at its last step."""
    generator = torch.Generator().manual_seed(0)
    actions = torch.nn.functional.one_hot(torch.randint(2, (n, steps), generator=generator), 2).float()
    z = torch.zeros(n, steps + 1, 2)
    z[:, 0] = torch.randn(n, 2, generator=generator)
    for t in range(steps):
        angle = 0.3 * (2 * actions[:, t, 1] - 1)
        rotation = torch.stack([torch.cos(angle), -torch.sin(angle), torch.sin(angle), torch.cos(angle)], -1)
        z[:, t + 1] = torch.einsum("bij,bj->bi", rotation.view(n, 2, 2), z[:, t])
    terminated = torch.zeros(n, steps)
    terminated[:, -1] = 1.0
    return LatentSequences(z, actions, torch.ones(n, steps), terminated, torch.ones(n, steps, dtype=torch.bool),
                           torch.full((n,), steps))  # fmt: skip


def test_mdn_rnn_loss_decreases_on_a_synthetic_sequence():
    model = MDNRNN(latent_size=2, action_dim=2, hidden_size=16, n_mixtures=3, seed=0)
    history = fit_mdn_rnn(model, synthetic_sequences(), epochs=60, batch_size=4, lr=3e-3, pos_weight=11.0,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert history[-1].total < history[0].total - 1.0, (history[0], history[-1])
    assert history[-1].latent_nll < history[0].latent_nll and history[-1].reward_mse < history[0].reward_mse


def test_mdn_rnn_rejects_bad_sizes():
    with pytest.raises(ValueError, match="hidden_size must be a positive integer, got 0"):
        MDNRNN(latent_size=4, action_dim=2, hidden_size=0)


# ---------------------------------------------------------------------- the dream
def test_latent_dream_env_passes_check_env_with_the_real_action_space():
    for action_space in (spaces.Discrete(3), spaces.Box(-2.0, 2.0, (2,), np.float32)):
        model = MDNRNN(latent_size=4, action_dim=3 if isinstance(action_space, spaces.Discrete) else 2,
                       hidden_size=8, seed=0)  # fmt: skip
        env = LatentDreamEnv(model, torch.randn(5, 4), action_space, tau=1.15, max_episode_steps=7)
        check_env(env, skip_render_check=True)
        assert env.action_space == action_space and env.observation_space.shape == (4 + 8,)
        env.reset(seed=0)
        steps = 0
        while True:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            steps += 1
            if terminated or truncated:
                break
        assert steps <= 7


def test_dream_rejects_a_bad_tau_by_name():
    for tau in (-0.5, float("nan"), "hot"):
        with pytest.raises(ValueError, match="tau"):
            LatentDreamEnv(MDNRNN(4, 2, hidden_size=8), torch.zeros(1, 4), spaces.Discrete(2), tau=tau)


@pytest.mark.parametrize("tau", [0.0, 1.0])
def test_batched_dream_returns_equal_per_candidate_returns(tau):
    model = MDNRNN(latent_size=3, action_dim=2, hidden_size=8, seed=0)
    with torch.no_grad():
        model.done_head[-1].bias.fill_(-1.0)  # episodes of a few steps, not all ending at the first
    dream = LatentDream(model, torch.randn(6, 3, generator=torch.Generator().manual_seed(1)), spaces.Discrete(2), tau)
    controller = LinearController(dream.feature_size, dream.action_space)
    params = torch.randn(5, controller.num_params, generator=torch.Generator().manual_seed(2))
    batched, batched_lengths = dream_returns(dream, controller, params, 4, 30, torch.Generator().manual_seed(3))
    assert batched.shape == batched_lengths.shape == (5, 4)
    for p in range(5):
        alone, lengths = dream_returns(dream, controller, params[p : p + 1], 4, 30, torch.Generator().manual_seed(3))
        torch.testing.assert_close(alone[0], batched[p], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(lengths[0], batched_lengths[p])


def test_dream_can_start_mid_episode_with_the_real_memory():
    model = MDNRNN(latent_size=2, action_dim=2, hidden_size=4, seed=0)
    memory = (torch.arange(12.0).view(3, 4), -torch.arange(12.0).view(3, 4))
    dream = LatentDream(model, torch.zeros(3, 2), spaces.Discrete(2), start_memory=memory,
                        start_weights=torch.tensor([0.0, 1.0, 0.0]))  # fmt: skip
    state = dream.reset(5, torch.Generator().manual_seed(0))
    assert torch.equal(state.h, memory[0][[1] * 5]) and torch.equal(state.c, memory[1][[1] * 5])
    with pytest.raises(ValueError, match="start_memory"):
        LatentDream(model, torch.zeros(3, 2), spaces.Discrete(2), start_memory=(torch.zeros(2, 4), torch.zeros(2, 4)))


class BalanceDream(LatentDream):
    """A hand-made dream: action 1 pushes z right, 0 left, with noise; |z| > 1 terminates; reward 1 per step."""

    def step(self, state, actions, uniform=None, normal=None, generator=None):
        push = 0.2 * (2.0 * actions.float() - 1.0)
        noise = 0.05 * (normal if normal is not None else torch.randn(state.z.shape, generator=generator))
        z = state.z + 0.1 * state.z + push.unsqueeze(-1) + noise  # unstable: drifts away without control
        return DreamState(z, state.h, state.c), torch.ones(len(z)), z.abs().max(dim=-1).values > 1.0


def test_cma_es_improves_the_dream_return_of_a_hand_made_dream():
    dream = BalanceDream(MDNRNN(1, 2, hidden_size=2, seed=0), torch.linspace(-0.5, 0.5, 9)[:, None],
                         spaces.Discrete(2), tau=1.0)  # fmt: skip
    controller = LinearController(dream.feature_size, dream.action_space)
    rng = np.random.default_rng(0)
    before, _ = dream_returns(dream, controller, torch.zeros(1, controller.num_params), 32, 100)
    result = train_controller(dream, controller, generations=10, popsize=8, episodes=4, max_steps=100, rng=rng,
                              final_episodes=32)  # fmt: skip
    assert float(before.mean()) < 15 and result.dream_return > 80, (float(before.mean()), result)
    assert result.params.shape == (controller.num_params,) and result.chosen in ("best", "mean")


def test_linear_controller_keeps_box_actions_in_their_bounds():
    space = spaces.Box(np.array([-1.0, 0.0], np.float32), np.array([1.0, 5.0], np.float32))
    controller = LinearController(3, space)
    actions = controller.act(100 * torch.randn(2, 50, 3), 10 * torch.randn(2, controller.num_params))
    assert actions.shape == (2, 50, 2)
    assert bool((actions >= torch.as_tensor(space.low)).all() and (actions <= torch.as_tensor(space.high)).all())


# ---------------------------------------------------------------------- the agent
def test_agent_errors_name_the_offending_value():
    with pytest.raises(ValueError, match=r"render_mode=None"):
        WorldModels(gym.make("CartPole-v1"), **TINY)
    with pytest.raises(ValueError, match="tau"):
        WorldModels("CartPole-v1", **{**TINY, "tau": -1.0})
    with pytest.raises(ValueError, match="latent_size must be a positive integer, got 0"):
        WorldModels("CartPole-v1", **{**TINY, "latent_size": 0})
    with pytest.raises(ValueError, match="exploration"):
        WorldModels("CartPole-v1", **{**TINY, "exploration": 1.5})


def test_agent_uses_image_observations_as_they_are():
    agent = WorldModels(pixel_cartpole(), seed=0, **TINY)
    assert agent.observation_space.shape == (64, 64, 3)
    assert agent.make_dream_env().action_space == spaces.Discrete(2)


class StepRecorder(BaseCallback):
    def __init__(self, stop_at: int | None = None):
        super().__init__()
        self.steps: list[int] = []
        self.stop_at = stop_at

    def _on_step(self) -> bool:
        self.steps.append(self.num_timesteps)
        return self.stop_at is None or self.num_timesteps < self.stop_at


def test_learn_calls_the_callback_after_every_real_step():
    recorder = StepRecorder()
    agent = WorldModels("CartPole-v1", seed=0, mid_episode_starts=0.5, **TINY)
    agent.learn(250, callback=recorder, progress_bar=True)
    assert recorder.steps == list(range(1, 251)) and agent.num_timesteps == 250
    assert agent.iterations == 3  # 100 + 100 + 50 real steps, each followed by fitting V, M and C
    assert agent.last_dream_return is not None and len(agent.store) >= 250
    stopper = StepRecorder(stop_at=30)
    stopped = WorldModels("CartPole-v1", seed=0, **TINY).learn(250, callback=stopper)
    assert stopped.num_timesteps == 30 and stopped.iterations == 0


def test_evaluate_policy_carries_the_recurrent_state(trained_agent):
    mean, _ = evaluate_policy(trained_agent, pixel_cartpole(), n_eval_episodes=2, warn=False)
    assert mean >= 8
    frames = np.stack([pixel_cartpole().reset(seed=s)[0] for s in range(3)])
    actions, (h, c) = trained_agent.predict(frames, deterministic=True)
    assert actions.shape == (3,) and h.shape == c.shape == (3, 8)
    _, (h2, _) = trained_agent.predict(frames, (h, c), deterministic=True)
    assert not np.allclose(h2, h)  # the memory moves on
    _, (h3, _) = trained_agent.predict(frames, (h2, c), episode_start=np.ones(3, bool), deterministic=True)
    np.testing.assert_allclose(h3, h)  # a new episode starts from zero memory


def test_save_and_load_give_identical_predictions(trained_agent, tmp_path):
    path = trained_agent.save(tmp_path / "wm.pt")
    loaded = WorldModels.load(path, "CartPole-v1")
    frames = np.stack([pixel_cartpole().reset(seed=s)[0] for s in range(4)])
    state = None
    for _ in range(3):
        expected, expected_state = trained_agent.predict(frames, state, deterministic=True)
        actions, loaded_state = loaded.predict(frames, state, deterministic=True)
        np.testing.assert_array_equal(actions, expected)
        np.testing.assert_allclose(loaded_state[0], expected_state[0])
        state = expected_state
    assert loaded.latent_size == 4 and loaded.iterations == trained_agent.iterations


def test_load_of_a_corrupted_file_raises_model_file_error(trained_agent, tmp_path):
    path = trained_agent.save(tmp_path / "wm.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        WorldModels.load(path, "CartPole-v1")
