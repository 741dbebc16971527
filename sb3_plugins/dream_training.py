"""Train a stock SB3 agent only inside a dream env and score it on the real env."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

import dream_envs  # noqa: F401  (registers the Dream-* ids)
from dream_envs import DREAM_IDS
from dream_envs.checks import check_int
from dream_envs.device import resolve_device

__all__ = ["ALGOS", "DREAM_TRAINING_ROWS", "DreamTrainingResult", "train_in_dream"]

ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "dqn": DQN, "sac": SAC, "td3": TD3}
# the algos that act in one kind of action space only (PPO and A2C take both)
_ACTION_SPACES = {"dqn": gym.spaces.Discrete, "sac": gym.spaces.Box, "td3": gym.spaces.Box}

_ZOO_CARTPOLE_PPO = {"n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20,
                     "ent_coef": 0.0, "learning_rate": 1e-3, "clip_range": 0.2}  # fmt: skip
# How the project measures training in the shipped dreams (benchmarks/dream_training.py, the slow tests): row ->
# (dream id, algo, dream steps, n_envs, SB3 settings, real-env target). rl-zoo's settings where rl-zoo has them
# (linear schedules at their start values, exploration in steps turned into a fraction), and SB3's defaults.
DREAM_TRAINING_ROWS: dict[str, tuple[str, str, int, int, dict[str, Any], float]] = {
    "cartpole-ppo-zoo": ("Dream-CartPole-v0", "ppo", 100_000, 8, _ZOO_CARTPOLE_PPO, 475.0),
    "cartpole-ppo-default": ("Dream-CartPole-v0", "ppo", 100_000, 1, {}, 475.0),
    "cartpole-dqn-zoo": ("Dream-CartPole-v0", "dqn", 50_000, 1, {
        "learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100_000, "learning_starts": 1000, "gamma": 0.99,
        "target_update_interval": 10, "train_freq": 256, "gradient_steps": 128, "exploration_fraction": 0.16,
        "exploration_final_eps": 0.04, "policy_kwargs": {"net_arch": [256, 256]}}, 475.0),
    "acrobot-ppo-zoo": ("Dream-Acrobot-v0", "ppo", 100_000, 16, {
        "n_steps": 256, "gae_lambda": 0.94, "gamma": 0.99, "n_epochs": 4, "ent_coef": 0.0}, -100.0),
    "acrobot-ppo-default": ("Dream-Acrobot-v0", "ppo", 100_000, 1, {}, -100.0),
    "acrobot-dqn-zoo": ("Dream-Acrobot-v0", "dqn", 100_000, 1, {
        "learning_rate": 6.3e-4, "batch_size": 128, "buffer_size": 50_000, "learning_starts": 0, "gamma": 0.99,
        "target_update_interval": 250, "train_freq": 4, "gradient_steps": -1, "exploration_fraction": 0.12,
        "exploration_final_eps": 0.1, "policy_kwargs": {"net_arch": [256, 256]}}, -100.0),
    "pendulum-sac-zoo": ("Dream-Pendulum-v0", "sac", 20_000, 1, {"learning_rate": 1e-3}, -200.0),
}  # fmt: skip


@dataclass
class DreamTrainingResult:
    """Outcome of :func:`train_in_dream`.

    :param dream_id: the dream env trained in
    :param real_id: the real env scored on
    :param algo: SB3 algorithm name
    :param seed: seed of the agent and the dream env
    :param dream_steps: imagined steps the agent trained on (``num_timesteps``); real steps used: 0
    :param train_seconds: wall time of ``learn``
    :param real_mean: mean return of the deterministic policy on the real env
    :param real_std: standard deviation of those returns
    :param dream_mean: mean return of the same policy in the dream (the gap to ``real_mean`` is the dream's honesty)
    :param eval_episodes: episodes per evaluation
    :param dream_length: mean length of those dream episodes
    :param dream_cutoff_fraction: fraction of those dream episodes the uncertainty cutoff ended
    :param uncertainty_mode: what the dream's cutoff did (``"truncate"``, ``"terminate"``, ``"penalty"``)
    :param n_envs: dream envs the agent trained on

    Example::

        from sb3_plugins import train_in_dream

        result = train_in_dream("Dream-CartPole-v0", "ppo", total_timesteps=256, seed=0, eval_episodes=1,
                                algo_kwargs={"n_steps": 128, "batch_size": 64})
        print(result.dream_steps, result.real_mean)
    """

    dream_id: str
    real_id: str
    algo: str
    seed: int
    dream_steps: int
    train_seconds: float
    real_mean: float
    real_std: float
    dream_mean: float
    eval_episodes: int
    dream_length: float = float("nan")
    dream_cutoff_fraction: float = float("nan")
    uncertainty_mode: str = "truncate"
    n_envs: int = 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_in_dream(
    dream_id: str = "Dream-CartPole-v0",
    algo: str = "ppo",
    total_timesteps: int = 100_000,
    seed: int = 0,
    uncertainty_threshold: float | str | None = "auto",
    uncertainty_mode: str | None = None,
    uncertainty_penalty: float | str = "auto",
    eval_episodes: int = 10,
    algo_kwargs: dict[str, Any] | None = None,
    n_envs: int = 1,
    progress_bar: bool = False,
    device: str = "auto",
) -> DreamTrainingResult:
    """Train ``algo`` with SB3's defaults (``MlpPolicy``) in ``gym.make(dream_id)``, then evaluate it on the real env.

    :param dream_id: a registered dream id (see :data:`dream_envs.DREAM_IDS`)
    :param algo: one of :data:`ALGOS`
    :param total_timesteps: imagined steps to train for
    :param seed: seeds the agent and the dream env
    :param uncertainty_threshold: the dream's cutoff (``"auto"``, a number, or ``None``)
    :param uncertainty_mode: what the cutoff does (``"truncate"``, ``"terminate"``, ``"penalty"``); ``None``: the
        registered id's default
    :param uncertainty_penalty: ``"auto"`` or a number >= 0 (see :class:`~dream_envs.DreamEnv`)
    :param eval_episodes: deterministic episodes on the real env (and in the dream)
    :param algo_kwargs: extra keyword arguments for the SB3 algorithm (its ``gamma`` is also the dream's, for the
        ``"terminate"`` mode's penalty)
    :param n_envs: dream envs the agent trains on (SB3's ``make_vec_env``; env ``i`` seeded ``seed + i``)
    :param progress_bar: SB3's progress bar during ``learn``
    :param device: the agent's device
    :raises ValueError: for an unknown dream id, algo or device, an algo that cannot act in the dream's action space
        (SAC and TD3 need a Box, DQN a Discrete one), or a bad count or dream setting, before any training
    """
    if dream_id not in DREAM_IDS:
        raise ValueError(f"dream_id={dream_id!r} is not registered; known: {sorted(DREAM_IDS)}")
    if algo not in ALGOS:
        raise ValueError(f"algo={algo!r} is not supported; choose one of {sorted(ALGOS)}")
    check_int("total_timesteps", total_timesteps)
    check_int("eval_episodes", eval_episodes)
    check_int("n_envs", n_envs)
    real_id = DREAM_IDS[dream_id][0]
    algo_kwargs = dict(algo_kwargs or {})
    dream_kwargs: dict[str, Any] = {
        "uncertainty_threshold": uncertainty_threshold,
        "uncertainty_penalty": uncertainty_penalty,
        "gamma": algo_kwargs.get("gamma", 0.99),
    }
    if uncertainty_mode is not None:
        dream_kwargs["uncertainty_mode"] = uncertainty_mode
    dream = gym.make(dream_id, seed=seed, **dream_kwargs)  # checks every setting before training starts
    needed = _ACTION_SPACES.get(algo)
    if needed is not None and not isinstance(dream.action_space, needed):  # SB3's own refusal is an assertion
        raise ValueError(f"algo {algo!r} needs a {needed.__name__} action space; {dream_id} has {dream.action_space}")
    resolve_device(device)  # named here, not in torch's words from inside the agent
    mode = dream.unwrapped.uncertainty_mode
    venv = make_vec_env(dream_id, n_envs=n_envs, seed=seed, env_kwargs=dream_kwargs)
    agent = ALGOS[algo]("MlpPolicy", venv, seed=seed, verbose=0, device=device, **algo_kwargs)
    started = time.perf_counter()
    agent.learn(total_timesteps, progress_bar=progress_bar)
    train_seconds = time.perf_counter() - started
    real_env = Monitor(gym.make(real_id))
    real_env.reset(seed=10_000 + seed)
    real_mean, real_std = evaluate_policy(agent, real_env, n_eval_episodes=eval_episodes, deterministic=True)
    dream_returns, dream_lengths, cutoffs = _dream_episodes(agent, dream, eval_episodes)
    return DreamTrainingResult(
        dream_id, real_id, algo, seed, int(agent.num_timesteps), round(train_seconds, 1), float(real_mean),
        float(real_std), float(np.mean(dream_returns)), eval_episodes, float(np.mean(dream_lengths)),
        float(np.mean(cutoffs)), mode, n_envs,
    )  # fmt: skip


def _dream_episodes(agent: BaseAlgorithm, dream: gym.Env, episodes: int) -> tuple[list, list, list]:
    """Deterministic episodes of ``agent`` in ``dream``: returns, lengths, and whether the cutoff ended each."""
    returns, lengths, cutoffs = [], [], []
    for _ in range(episodes):
        obs, _ = dream.reset()
        total, length, done, info = 0.0, 0, False, {}
        while not done:
            action, _ = agent.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, info = dream.step(action)
            total, length, done = total + float(reward), length + 1, terminated or truncated
        returns.append(total)
        lengths.append(length)
        cutoffs.append(bool(info.get("uncertainty_cutoff", False)))
    return returns, lengths, cutoffs
