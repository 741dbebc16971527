"""Every device path on ``device="cuda"``: the ensemble's fit and step, the dream envs, DynaCallback under PPO and
SAC, MPCAgent (with its terminal value), MuZero and World Models.

Each test runs on ``"cpu"`` too: the same body passing there shows the test itself is right, so a failure of the
``cuda`` variant (marked ``gpu``; skipped without CUDA, see conftest.py) is a device bug. ``pytest -m gpu`` runs the
CUDA variants alone on a machine that has one.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO, SAC

from dream_envs import DreamEnv, EnsembleDynamics, TransitionBuffer
from dream_envs.agents import MPCAgent, MuZero, WorldModels
from dream_envs.agents.world_models import MDNRNN, ConvVAE, LatentDream, LinearController, train_controller
from dream_envs.diagnostics import calibration, compounding_error
from dream_envs.planning import ModelValueFunction
from sb3_plugins import DreamVecEnv, DynaCallback

DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=pytest.mark.gpu)]
TINY_DYNA = {
    "ensemble_kwargs": {"hidden_sizes": (16,)},
    "fit_kwargs": {"max_epochs": 2},
    "model_train_freq": 100,
    "n_dream_envs": 8,
    "dream_rollouts": 1,
    "rollout_batch_size": 32,
    "utd_ratio": 2,
    "trust_errors": None,
    "seed": 0,
}  # seconds on a CPU; trust_errors=None: the dream is used regardless


def on(tensor: torch.Tensor, device: str) -> bool:
    return tensor.device.type == device


@pytest.fixture(scope="module", params=DEVICES)
def fitted(request) -> tuple[EnsembleDynamics, TransitionBuffer]:
    """A small CartPole ensemble fitted on the device (its fit calibrates the auto cutoff there too)."""
    env = gym.make("CartPole-v1")
    buffer = TransitionBuffer.from_env(env).collect(env, n_steps=600, seed=0)
    model = EnsembleDynamics(env.observation_space, env.action_space, env_id="CartPole-v1", ensemble_size=3,
                             num_elites=2, hidden_sizes=(32,), device=request.param, seed=0)  # fmt: skip
    model.fit(buffer, max_epochs=3, batch_size=64, seed=0)
    return model, buffer


def test_ensemble_fits_steps_saves_and_diagnoses_on_its_device(fitted, tmp_path):
    model, buffer = fitted
    device = model.device.type
    assert bool(model.fitted) and all(on(p, device) for p in model.parameters())
    obs = buffer.transitions().obs[:5]
    generator = torch.Generator(device=model.device).manual_seed(0)
    for propagation in ("ts1", "mean", "single"):
        step = model.step(obs, np.array([0, 1, 0, 1, 0]), generator=generator, propagation=propagation)
        assert on(step.next_obs, device) and step.next_obs.shape == (5, 4) and torch.isfinite(step.next_obs).all()
    members = torch.as_tensor(np.tile(obs[:2], (3, 1, 1)), device=model.device)  # (E, 2, obs_dim)
    next_obs, reward, _ = model.step_members(members, torch.zeros(3, 2, dtype=torch.long, device=model.device),
                                             generator)  # fmt: skip
    assert on(next_obs, device) and reward.shape == (3, 2)
    assert on(model.predict(obs, np.zeros(5, np.int64)).delta_mean, device)
    model.save(tmp_path / "model.pt")
    loaded = EnsembleDynamics.load(tmp_path / "model.pt", device=device)
    assert on(loaded.in_mean, device)
    actions = np.zeros(5, np.int64)
    assert torch.equal(loaded.predict(obs, actions).delta_mean, model.predict(obs, actions).delta_mean)
    curve = compounding_error(model, gym.make("CartPole-v1"), max_horizon=4, n_segments=10, seed=0)
    assert np.isfinite(curve.errors["ts1"]).all()
    report = calibration(model, gym.make("CartPole-v1"), horizon=3, n_segments=40, seed=0)
    assert report.k_step.shape == (2, 40)


def test_seeded_networks_follow_their_seed_and_leave_the_global_random_state(fitted):
    model, _ = fitted
    device = model.device

    def global_state() -> list[torch.Tensor]:
        return [torch.get_rng_state()] + ([torch.cuda.get_rng_state(device)] if device.type == "cuda" else [])

    def build() -> list[torch.nn.Module]:
        return [ModelValueFunction(model, hidden_sizes=(8, 8), seed=0).network,
                MuZero("CartPole-v1", n_envs=1, latent_size=8, hidden_size=16, seed=0, device=device.type).network,
                ConvVAE(4, (4, 8, 8, 16), seed=0).to(device),
                MDNRNN(4, 2, hidden_size=8, seed=0).to(device)]  # fmt: skip

    before = global_state()
    first, second = build(), build()
    assert all(torch.equal(a, b) for a, b in zip(before, global_state()))
    for one, other in zip(first, second):
        assert all(torch.equal(p, q) and p.device.type == device.type
                   for p, q in zip(one.parameters(), other.parameters()))  # fmt: skip


def test_dream_env_and_dream_vec_env_step_on_the_models_device(fitted):
    model, buffer = fitted
    env = DreamEnv(model, seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(20):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert isinstance(obs, np.ndarray) and np.isfinite(obs).all() and np.isfinite(reward)
        if terminated or truncated:
            obs, _ = env.reset()
    venv = DreamVecEnv(model, n_envs=8, max_episode_steps=10, seed=0)
    venv.reset()
    for _ in range(25):  # through auto-resets
        obs, rewards, dones, infos = venv.step(np.random.default_rng(0).integers(0, 2, 8))
        assert obs.shape == (8, 4) and np.isfinite(obs).all() and np.isfinite(rewards).all()
    assert on(venv.last_uncertainty, model.device.type)
    assert venv.reset_from(buffer.transitions().obs[:8]).shape == (8, 4)


def test_a_user_function_is_tried_and_called_on_the_models_device(fitted):
    model, _ = fitted
    seen = set()

    def reward(obs, action, next_obs):  # written for the model's device, as a user on a GPU writes it
        seen.update({obs.device.type, action.device.type, next_obs.device.type})
        return next_obs[:, 0] * torch.ones(1, device=model.device)

    DreamEnv(model, seed=0, reward_fn=reward).reset(seed=0)  # the constructor's try on 2 rows
    agent = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=64, batch_size=64, device=model.device)
    DynaCallback(dynamics=model, reward_fn=reward).check_agent(agent)
    assert seen == {model.device.type}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_dyna_callback_trains_the_agent_and_its_model_on_the_device(algo, device):
    if algo == "ppo":
        agent = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=100, batch_size=50, seed=0, device=device)
    else:
        agent = SAC("MlpPolicy", gym.make("Pendulum-v1"), learning_starts=100, batch_size=32, seed=0, device=device,
                    policy_kwargs={"net_arch": [16]})  # fmt: skip
    dyna = DynaCallback(**TINY_DYNA)
    agent.learn(300, callback=dyna)
    assert dyna.model_fits >= 2 and dyna.imagined_steps > 0
    assert dyna.dynamics.device.type == device and agent.device.type == device


@pytest.mark.filterwarnings("ignore::dream_envs.models.calibration.CutoffCalibrationWarning")  # 50 steps: uncalibrated
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_mpc_agent_plans_with_its_terminal_value_on_the_device(env_id, device):
    agent = MPCAgent(env_id, horizon=4, population=16, iterations=2, particles=4, learning_starts=50, train_freq=50,
                     terminal_value=True, fit_kwargs={"max_epochs": 2}, device=device, seed=0,
                     ensemble_kwargs={"ensemble_size": 4, "num_elites": 4, "hidden_sizes": (16,)},
                     value_kwargs={"hidden_sizes": (16,), "rounds": 1, "rollouts": 16, "rollout_length": 5,
                                   "updates": 5, "batch_size": 16})  # fmt: skip
    agent.learn(60)
    assert agent.model_fits == 1 and agent.model.device.type == device and agent.value.fitted
    obs = gym.make(env_id).reset(seed=0)[0]
    action, _ = agent.predict(np.stack([obs, obs]), deterministic=True)
    assert gym.make(env_id).action_space.contains(action[0])


@pytest.mark.parametrize("device", DEVICES)
def test_muzero_searches_and_trains_on_the_device(device, tmp_path):
    agent = MuZero("CartPole-v1", n_envs=2, num_simulations=4, batch_size=8, latent_size=8, hidden_size=16,
                   learning_starts=16, device=device, seed=0).learn(40)  # fmt: skip
    assert agent.gradient_steps > 0 and next(agent.network.parameters()).device.type == device
    agent.save(tmp_path / "muzero.pt")
    loaded = MuZero.load(tmp_path / "muzero.pt", gym.make("CartPole-v1"), device=device)
    obs = gym.make("CartPole-v1").reset(seed=0)[0]
    assert loaded.predict(obs, deterministic=True)[0] == agent.predict(obs, deterministic=True)[0]


@pytest.mark.parametrize("device", DEVICES)
def test_world_models_fits_dreams_and_acts_on_the_device(device):
    agent = WorldModels("CartPole-v1", latent_size=4, hidden_size=8, n_mixtures=2, vae_channels=(4, 8, 8, 16),
                        frames_per_iteration=100, vae_epochs=1, mdn_epochs=1, cma_generations=2, cma_popsize=4,
                        dream_episodes=2, max_dream_steps=10, mid_episode_starts=0.5, exploration=0.5,
                        device=device, seed=0).learn(200)  # fmt: skip
    assert agent.iterations == 2 and next(agent.vae.parameters()).device.type == device
    # The controller's CMA-ES dream and the dream as a gymnasium Env, each with the sampling noise drawn for the
    # model's device.
    dream = LatentDream(agent.mdn, agent.start_latents, agent.action_space, tau=1.0)
    controller = LinearController(dream.feature_size, agent.action_space)
    result = train_controller(dream, controller, generations=1, popsize=4, episodes=2, max_steps=5,
                              rng=np.random.default_rng(0), final_episodes=2)  # fmt: skip
    assert np.isfinite(result.dream_return)
    env = agent.make_dream_env(max_episode_steps=5)
    env.reset(seed=0)
    for _ in range(5):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert np.isfinite(obs).all() and np.isfinite(reward)
    frames = np.zeros((3, 64, 64, 3), np.uint8)
    actions, (h, c) = agent.predict(frames, deterministic=False)  # exploration=0.5: random actions mixed in
    assert actions.shape == (3,) and h.shape == (3, 8)
