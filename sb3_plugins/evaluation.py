"""Real steps to a return threshold: the yardstick every sample-efficiency figure in docs/ is measured with."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from dream_envs.checks import check_int

__all__ = ["EpisodesToThreshold", "RealStepsToThreshold", "first_streak"]


def first_streak(curve: Sequence[Sequence[float]], threshold: float, length: int) -> int | None:
    """The count (real steps or episodes) of the first check that starts ``length`` consecutive passing checks
    (mean return >= ``threshold``), or ``None`` if ``curve`` holds no such streak.

    :param curve: ``(count, mean_return)`` per check, in order
    :param threshold: mean return that counts as a pass
    :param length: passing checks in a row; ``stay + 1`` for "solved and stays solved", 1 for the first pass

    Example::

        from sb3_plugins.evaluation import first_streak

        curve = [(250, 480.0), (500, 90.0), (750, 476.0), (1000, 500.0), (1250, 490.0)]
        assert first_streak(curve, 475, 1) == 250 and first_streak(curve, 475, 3) == 750
    """
    run = 0
    for i, (_, mean) in enumerate(curve):
        run = run + 1 if mean >= threshold else 0
        if run == length:
            return int(curve[i - length + 1][0])
    return None


class _ThresholdCheck(BaseCallback):
    """Shared by the two yardsticks: evaluate deterministically, record the curve, stop once solved (and stayed
    solved for ``stay`` more checks)."""

    def __init__(self, env_id: str, threshold: float, every: int, n_episodes: int, stop: bool, seed: int | None,
                 env_kwargs: dict[str, Any] | None, verbose: int, n_envs: int = 1,
                 wrapper: Callable[[gym.Env], gym.Env] | None = None, stay: int = 0):  # fmt: skip
        super().__init__(verbose)
        check_int("every", every)
        check_int("n_episodes", n_episodes)
        stay = check_int("stay", stay, minimum=0)  # passing checks after the first
        if not isinstance(n_envs, int) or not 1 <= n_envs <= n_episodes:
            raise ValueError(f"n_envs must be an integer from 1 to n_episodes={n_episodes}, got {n_envs!r}")
        self.env_id, self.threshold, self.every, self.n_episodes = env_id, float(threshold), every, n_episodes
        self.stop, self.stay = stop, stay
        if n_envs == 1:
            env = gym.make(env_id, **(env_kwargs or {}))
            self.eval_env = Monitor(wrapper(env) if wrapper else env)
            self.eval_env.reset(seed=seed)
        else:  # SB3's VecEnv spreads the episodes over the envs, and the agent acts on them as one batch
            self.eval_env = make_vec_env(env_id, n_envs, seed=seed, env_kwargs=env_kwargs, wrapper_class=wrapper)
        self.hit: int | None = None
        self.stayed: int | None = None
        self.curve: list[tuple[int, float]] = []
        self._next = every

    def _check(self, count: int, unit: str) -> bool:
        """Evaluate now; False (stop training) when ``stop`` and this check completes the first streak of
        ``stay + 1`` passing checks. A streak broken by a failing check starts over at the next pass."""
        self._next += self.every
        returns, lengths = evaluate_policy(self.model, self.eval_env, n_eval_episodes=self.n_episodes,
                                           deterministic=True, return_episode_rewards=True)  # fmt: skip
        mean = float(np.mean(returns))
        self.curve.append((count, round(mean, 4)))
        self.logger.record("eval/real_mean_return", mean)
        # SB3's EvalCallback keys too, so that what reads them (rl-zoo3's and SB3's users' dashboards, tensorboard
        # comparisons with stock runs) finds this check's numbers without knowing the project's own key.
        self.logger.record("eval/mean_reward", mean)
        self.logger.record("eval/mean_ep_length", float(np.mean(lengths)))
        if self.verbose:
            print(f"{count} {unit}: mean return {mean:.3f}")
        if mean >= self.threshold and self.hit is None:
            self.hit = count
        if self.stayed is None and mean >= self.threshold:
            self.stayed = first_streak(self.curve[-(self.stay + 1) :], self.threshold, self.stay + 1)
            if self.stayed is not None:
                return not self.stop
        return True


class RealStepsToThreshold(_ThresholdCheck):
    """Every ``every`` REAL steps, play ``n_episodes`` deterministic episodes of a fresh real env; stop training at
    the first check whose mean return reaches ``threshold`` or, with ``stay``, once ``stay`` checks in a row
    after it pass too.

    ``hit`` is the real-step count of the first passing check (``None`` if never reached); ``stayed`` that of the
    first check that starts ``stay + 1`` passing checks in a row ("solved and stays solved"; ``None`` if no such
    streak ends within the budget; equal to ``hit`` when ``stay`` is 0). ``curve`` holds every check as
    ``(real_steps, mean_return)``: the protocol of docs/ (10 episodes, checks every 250 real steps on CartPole,
    200 on Pendulum; the first passing check counts, and the benchmark also reports ``stay=2``). Each check logs
    its mean return as ``eval/real_mean_return`` and, under the names of SB3's ``EvalCallback``, as
    ``eval/mean_reward`` beside ``eval/mean_ep_length``; they reach the outputs at the agent's next log dump.

    :param env_id: the real env to evaluate on
    :param threshold: mean return that counts as solved
    :param every: real steps between checks
    :param n_episodes: deterministic episodes per check
    :param stop: end training once solved (and stayed solved, with ``stay``)
    :param seed: seeds the evaluation env once, so checks are reproducible
    :param env_kwargs: keyword arguments of ``gym.make(env_id)``
    :param verbose: 1 prints each check
    :param n_envs: play the episodes in a VecEnv of this many envs (agents that act on a batch at once, such as
        MuZero's batched search, check faster); 1 plays them one after another
    :param wrapper: wraps each evaluation env (e.g. :class:`~dream_envs.envs.PixelObservation` for agents that see
        pixels)
    :param stay: passing checks that must follow the first of a streak; a streak broken by a failing check starts
        over at the next pass
    :param budget: the real steps the run may use: no check after them (``None``: no limit). SB3 ends
        ``learn(budget)`` only at a rollout's end (PPO's 8 x 32 steps on CartPole: 512 real steps for 300), and a
        pass in that overshoot would rank a solved run behind an unsolved one, which counts as its budget

    Example::

        import gymnasium as gym
        from stable_baselines3 import PPO
        from sb3_plugins import RealStepsToThreshold

        check = RealStepsToThreshold("CartPole-v1", threshold=475, every=128, n_episodes=2, seed=0, stay=2)
        PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=128, seed=0).learn(256, callback=check)
        print(check.hit, check.stayed, check.curve)
    """

    def __init__(self, env_id: str, threshold: float, every: int, n_episodes: int = 10, stop: bool = True,
                 seed: int | None = None, env_kwargs: dict[str, Any] | None = None, verbose: int = 0,
                 n_envs: int = 1, wrapper: Callable[[gym.Env], gym.Env] | None = None, stay: int = 0,
                 budget: int | None = None):  # fmt: skip
        super().__init__(env_id, threshold, every, n_episodes, stop, seed, env_kwargs, verbose, n_envs, wrapper,
                         stay)  # fmt: skip
        self.budget = None if budget is None else check_int("budget", budget)

    def _on_step(self) -> bool:
        if self.num_timesteps < self._next or (self.budget is not None and self.num_timesteps > self.budget):
            return True
        return self._check(self.num_timesteps, "real steps")


class EpisodesToThreshold(_ThresholdCheck):
    """Like :class:`RealStepsToThreshold`, counted in finished REAL episodes: every ``every`` episodes, play
    ``n_episodes`` deterministic episodes of a fresh env; ``hit`` is the episode count of the first passing check.

    The yardstick of tabular agents (episodes to solve FrozenLake or Taxi), for any SB3-shaped agent whose
    ``learn`` exposes ``dones`` to callbacks (SB3's algorithms and :class:`dream_envs.agents.DynaQ` do). It logs
    the same keys as :class:`RealStepsToThreshold`.

    :param env_id: the real env to evaluate on
    :param threshold: mean return that counts as solved
    :param every: finished training episodes between checks
    :param n_episodes: deterministic episodes per check
    :param stop: end training at the first passing check
    :param seed: seeds the evaluation env once
    :param env_kwargs: keyword arguments of ``gym.make(env_id)`` (e.g. ``{"is_slippery": False}``)
    :param verbose: 1 prints each check

    Example::

        import gymnasium as gym
        from dream_envs.agents import DynaQ
        from sb3_plugins import EpisodesToThreshold

        # checked on the env it trains on (a fresh one, made with the same arguments)
        check = EpisodesToThreshold("FrozenLake-v1", 1.0, every=1, n_episodes=1, env_kwargs={"is_slippery": False})
        DynaQ(gym.make("FrozenLake-v1", is_slippery=False), planning_steps=50, seed=0).learn(20_000, callback=check)
        print(check.hit, check.curve[-1])  # the first episode whose check reached 1.0, and that check
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
