"""Real steps to a return threshold: the yardstick every sample-efficiency figure in docs/ is measured with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from dream_envs.checks import check_int

__all__ = ["EpisodesToThreshold", "RealStepsToThreshold"]


class _ThresholdCheck(BaseCallback):
    """Shared by the two yardsticks: evaluate deterministically, record the curve, stop at the first pass."""

    def __init__(self, env_id: str, threshold: float, every: int, n_episodes: int, stop: bool, seed: int | None,
                 env_kwargs: dict[str, Any] | None, verbose: int, n_envs: int = 1,
                 wrapper: Callable[[gym.Env], gym.Env] | None = None):  # fmt: skip
        super().__init__(verbose)
        check_int("every", every)
        check_int("n_episodes", n_episodes)
        if not isinstance(n_envs, int) or not 1 <= n_envs <= n_episodes:
            raise ValueError(f"n_envs must be an integer from 1 to n_episodes={n_episodes}, got {n_envs!r}")
        self.env_id, self.threshold, self.every, self.n_episodes = env_id, float(threshold), every, n_episodes
        self.stop = stop
        if n_envs == 1:
            env = gym.make(env_id, **(env_kwargs or {}))
            self.eval_env = Monitor(wrapper(env) if wrapper else env)
            self.eval_env.reset(seed=seed)
        else:  # SB3's VecEnv spreads the episodes over the envs, and the agent acts on them as one batch
            self.eval_env = make_vec_env(env_id, n_envs, seed=seed, env_kwargs=env_kwargs, wrapper_class=wrapper)
        self.hit: int | None = None
        self.curve: list[tuple[int, float]] = []
        self._next = every

    def _check(self, count: int, unit: str) -> bool:
        """Evaluate now; False (stop training) at the first passing check when ``stop``."""
        self._next += self.every
        mean, _ = evaluate_policy(self.model, self.eval_env, n_eval_episodes=self.n_episodes, deterministic=True)
        self.curve.append((count, round(float(mean), 4)))
        self.logger.record("eval/real_mean_return", float(mean))
        if self.verbose:
            print(f"{count} {unit}: mean return {mean:.3f}")
        if mean >= self.threshold and self.hit is None:
            self.hit = count
            return not self.stop
        return True


class RealStepsToThreshold(_ThresholdCheck):
    """Every ``every`` REAL steps, play ``n_episodes`` deterministic episodes of a fresh real env; stop training at
    the first check whose mean return reaches ``threshold``.

    ``hit`` is the real-step count of that check (``None`` if never reached) and ``curve`` holds every check as
    ``(real_steps, mean_return)``: the protocol of docs/ (10 episodes, checks every 250 real steps on CartPole,
    200 on Pendulum, the first passing check counts).

    :param env_id: the real env to evaluate on
    :param threshold: mean return that counts as solved
    :param every: real steps between checks
    :param n_episodes: deterministic episodes per check
    :param stop: end training at the first passing check
    :param seed: seeds the evaluation env once, so checks are reproducible
    :param env_kwargs: keyword arguments of ``gym.make(env_id)``
    :param verbose: 1 prints each check
    :param n_envs: play the episodes in a VecEnv of this many envs (agents that act on a batch at once, such as
        MuZero's batched search, check faster); 1 plays them one after another
    :param wrapper: wraps each evaluation env (e.g. :class:`~dream_envs.envs.PixelObservation` for agents that see
        pixels)

    Example::

        import gymnasium as gym
        from stable_baselines3 import PPO
        from sb3_plugins import RealStepsToThreshold

        check = RealStepsToThreshold("CartPole-v1", threshold=475, every=128, n_episodes=2, seed=0)
        PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=128, seed=0).learn(256, callback=check)
        print(check.hit, check.curve)
    """

    def __init__(self, env_id: str, threshold: float, every: int, n_episodes: int = 10, stop: bool = True,
                 seed: int | None = None, env_kwargs: dict[str, Any] | None = None, verbose: int = 0,
                 n_envs: int = 1, wrapper: Callable[[gym.Env], gym.Env] | None = None):  # fmt: skip
        super().__init__(env_id, threshold, every, n_episodes, stop, seed, env_kwargs, verbose, n_envs, wrapper)

    def _on_step(self) -> bool:
        if self.num_timesteps < self._next:
            return True
        return self._check(self.num_timesteps, "real steps")


class EpisodesToThreshold(_ThresholdCheck):
    """Like :class:`RealStepsToThreshold`, counted in finished REAL episodes: every ``every`` episodes, play
    ``n_episodes`` deterministic episodes of a fresh env; ``hit`` is the episode count of the first passing check.

    The yardstick of tabular agents (episodes to solve FrozenLake or Taxi), for any SB3-shaped agent whose
    ``learn`` exposes ``dones`` to callbacks (SB3's algorithms and :class:`dream_envs.agents.DynaQ` do).

    :param env_id: the real env to evaluate on
    :param threshold: mean return that counts as solved
    :param every: finished training episodes between checks
    :param n_episodes: deterministic episodes per check
    :param stop: end training at the first passing check
    :param seed: seeds the evaluation env once
    :param env_kwargs: keyword arguments of ``gym.make(env_id)`` (e.g. ``{"is_slippery": False}``)
    :param verbose: 1 prints each check

    Example::

        from dream_envs.agents import DynaQ
        from sb3_plugins import EpisodesToThreshold

        check = EpisodesToThreshold("FrozenLake-v1", 1.0, every=1, n_episodes=1, env_kwargs={"is_slippery": False})
        DynaQ("FrozenLake-v1", planning_steps=50, seed=0).learn(20_000, callback=check)
        print(check.hit, check.curve[-1])
    """

    def __init__(self, env_id: str, threshold: float, every: int = 1, n_episodes: int = 10, stop: bool = True,
                 seed: int | None = None, env_kwargs: dict[str, Any] | None = None, verbose: int = 0):  # fmt: skip
        super().__init__(env_id, threshold, every, n_episodes, stop, seed, env_kwargs, verbose)
        self.episodes = 0

    def _on_step(self) -> bool:
        self.episodes += int(np.sum(self.locals["dones"]))
        if self.episodes < self._next:
            return True
        return self._check(self.episodes, "episodes")
