"""Train a stock SB3 agent only inside a dream env and score it on the real env."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

import dream_envs  # noqa: F401  (registers the Dream-* ids)
from dream_envs import DREAM_IDS
from dream_envs.checks import check_int

__all__ = ["ALGOS", "DreamTrainingResult", "train_in_dream"]

ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "dqn": DQN, "sac": SAC, "td3": TD3}


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_in_dream(
    dream_id: str = "Dream-CartPole-v0",
    algo: str = "ppo",
    total_timesteps: int = 100_000,
    seed: int = 0,
    uncertainty_threshold: float | str | None = "auto",
    eval_episodes: int = 10,
    algo_kwargs: dict[str, Any] | None = None,
    progress_bar: bool = False,
    device: str = "auto",
) -> DreamTrainingResult:
    """Train ``algo`` with SB3's defaults (``MlpPolicy``) in ``gym.make(dream_id)``, then evaluate it on the real env.

    :param dream_id: a registered dream id (see :data:`dream_envs.DREAM_IDS`)
    :param algo: one of :data:`ALGOS`
    :param total_timesteps: imagined steps to train for
    :param seed: seeds the agent and the dream env
    :param uncertainty_threshold: the dream's cutoff (``"auto"``, a number, or ``None``)
    :param eval_episodes: deterministic episodes on the real env (and in the dream)
    :param algo_kwargs: extra keyword arguments for the SB3 algorithm
    :param progress_bar: SB3's progress bar during ``learn``
    :param device: the agent's device
    """
    if dream_id not in DREAM_IDS:
        raise ValueError(f"dream_id={dream_id!r} is not registered; known: {sorted(DREAM_IDS)}")
    if algo not in ALGOS:
        raise ValueError(f"algo={algo!r} is not supported; choose one of {sorted(ALGOS)}")
    check_int("total_timesteps", total_timesteps)
    check_int("eval_episodes", eval_episodes)
    real_id = DREAM_IDS[dream_id][0]
    dream = Monitor(gym.make(dream_id, uncertainty_threshold=uncertainty_threshold, seed=seed))
    agent = ALGOS[algo]("MlpPolicy", dream, seed=seed, verbose=0, device=device, **(algo_kwargs or {}))
    started = time.perf_counter()
    agent.learn(total_timesteps, progress_bar=progress_bar)
    train_seconds = time.perf_counter() - started
    real_env = Monitor(gym.make(real_id))
    real_env.reset(seed=10_000 + seed)
    real_mean, real_std = evaluate_policy(agent, real_env, n_eval_episodes=eval_episodes, deterministic=True)
    dream_mean, _ = evaluate_policy(agent, dream, n_eval_episodes=eval_episodes, deterministic=True)
    return DreamTrainingResult(
        dream_id,
        real_id,
        algo,
        seed,
        int(agent.num_timesteps),
        round(train_seconds, 1),
        float(real_mean),
        float(real_std),
        float(dream_mean),
        eval_episodes,
    )
