"""Real steps to a return threshold: the yardstick every sample-efficiency figure in docs/ is measured with."""

from __future__ import annotations

import gymnasium as gym
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

__all__ = ["RealStepsToThreshold"]


class RealStepsToThreshold(BaseCallback):
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
    :param verbose: 1 prints each check

    Example::

        import gymnasium as gym
        from stable_baselines3 import PPO
        from sb3_plugins import RealStepsToThreshold

        check = RealStepsToThreshold("CartPole-v1", threshold=475, every=128, n_episodes=2, seed=0)
        PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=128, seed=0).learn(256, callback=check)
        print(check.hit, check.curve)
    """

    def __init__(
        self,
        env_id: str,
        threshold: float,
        every: int,
        n_episodes: int = 10,
        stop: bool = True,
        seed: int | None = None,
        verbose: int = 0,
    ):
        super().__init__(verbose)
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer of real steps, got {every!r}")
        if not isinstance(n_episodes, int) or n_episodes < 1:
            raise ValueError(f"n_episodes must be a positive integer, got {n_episodes!r}")
        self.env_id, self.threshold, self.every, self.n_episodes = env_id, float(threshold), every, n_episodes
        self.stop = stop
        self.eval_env = Monitor(gym.make(env_id))
        self.eval_env.reset(seed=seed)
        self.hit: int | None = None
        self.curve: list[tuple[int, float]] = []
        self._next = every

    def _on_step(self) -> bool:
        if self.num_timesteps < self._next:
            return True
        self._next += self.every
        mean, _ = evaluate_policy(self.model, self.eval_env, n_eval_episodes=self.n_episodes, deterministic=True)
        self.curve.append((self.num_timesteps, round(float(mean), 1)))
        self.logger.record("eval/real_mean_return", float(mean))
        if self.verbose:
            print(f"{self.num_timesteps} real steps: mean return {mean:.1f}")
        if mean >= self.threshold and self.hit is None:
            self.hit = self.num_timesteps
            return not self.stop
        return True
