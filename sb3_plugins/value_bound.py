"""The value bound on DQN-like agents' bootstrapped targets during the extra gradient steps of DynaCallback.

With rewards in ``[r_min, r_max]`` and discount ``gamma < 1``, every policy's discounted return, and so every true
action value, lies in ``[min(0, r_min), max(0, r_max)] / (1 - gamma)`` (0 for an episode that ends at once). Many
Bellman backups between two real steps (``utd_ratio``, each with a target sync) let an epsilon-greedy agent's
``max``-bootstrapped values run past that range: rl-zoo's CartPole DQN + ``DynaCallback()`` reached a mean max-Q of
1,473 on its real states by 3,000 real steps, where no return exceeds 100 (``docs/benchmarks.md``). Clipping the
target network's outputs to the range only removes values that no policy can have, so it never moves a correct
target (a projection onto the feasible set keeps the Bellman operator a contraction) and stops the divergence.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

__all__ = ["BoundedTarget", "bounded_targets", "target_network_names", "value_range"]


def value_range(rewards: np.ndarray, gamma: float) -> tuple[float, float] | None:
    """The range of every discounted return made of ``rewards``' values: ``[min(0, r_min), max(0, r_max)] /
    (1 - gamma)``; None when there is no bound (no rewards yet, ``gamma >= 1``, or a reward that is not finite).

    :param rewards: the rewards seen, any shape, in the units the agent trains on
    :param gamma: the agent's discount factor

    Example::

        import numpy as np
        from sb3_plugins.value_bound import value_range

        print(value_range(np.ones(10), gamma=0.99))  # CartPole: (0.0, 99.99999999999991), 1 / (1 - 0.99) in floats
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.size == 0 or not gamma < 1.0 or not np.isfinite(rewards).all():
        return None
    horizon = 1.0 / (1.0 - gamma)
    return min(0.0, float(rewards.min())) * horizon, max(0.0, float(rewards.max())) * horizon


class BoundedTarget(torch.nn.Module):
    """A target network whose outputs are clipped to ``[low, high]``, counting how many were clipped.

    :param target: the agent's target network (DQN's ``q_net_target``: values of shape ``(batch, n_actions)``;
        QR-DQN's ``quantile_net_target``: ``(batch, n_quantiles, n_actions)``)
    :param low: the least value any return can take
    :param high: the greatest

    Example::

        import torch
        from sb3_plugins.value_bound import BoundedTarget

        bounded = BoundedTarget(torch.nn.Linear(4, 2), low=0.0, high=100.0)
        print(bounded(torch.randn(8, 4) * 1e3).abs().max() <= 100.0, bounded.clipped, bounded.seen)
    """

    def __init__(self, target: torch.nn.Module, low: float, high: float):
        super().__init__()
        self.target = target
        self.low, self.high = float(low), float(high)
        self._clipped: torch.Tensor | int = 0  # a tensor on the values' device: no host sync per gradient step
        self.seen = 0

    @property
    def clipped(self) -> int:
        """How many target values the bound has clipped so far."""
        return int(self._clipped)

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        values = self.target(*args, **kwargs)
        bounded = values.clamp(self.low, self.high)
        self._clipped = self._clipped + (bounded != values).sum()
        self.seen += values.numel()
        return bounded


def target_network_names(algo: Any) -> list[str]:
    """The names of the agent's online networks that have a target beside them: every module attribute ``X`` with
    an ``X_target`` (DQN's ``q_net``, QR-DQN's ``quantile_net``)."""
    modules = {name for name, value in vars(algo).items() if isinstance(value, torch.nn.Module)}
    return [name for name in sorted(modules) if name + "_target" in modules]


def real_reward_extremes(algo: OffPolicyAlgorithm) -> np.ndarray:
    """The least and the greatest reward ``(2,)`` of the real transitions in the agent's replay buffer (empty
    before the first), in the units its ``train()`` sees them (normalised by its VecNormalize, as SB3 does when it
    samples). :func:`value_range` needs only these two; VecNormalize's reward scaling is monotone (a division by a
    positive scale, then a clip), so only they are normalised, not the whole buffer at every call. A NaN anywhere
    in the buffer makes both NaN."""
    buffer = getattr(algo.replay_buffer, "real", algo.replay_buffer)  # MixedReplayBuffer: its real part
    stored = buffer.buffer_size if buffer.full else buffer.pos
    if stored == 0:
        return np.empty(0, dtype=np.float64)
    rewards = buffer.rewards[:stored]
    extremes = np.array([rewards.min(), rewards.max()], dtype=np.float64)
    normalize = algo._vec_normalize_env
    if normalize is not None:
        extremes = np.asarray(normalize.normalize_reward(extremes), dtype=np.float64)
    return extremes


@contextmanager
def bounded_targets(algo: OffPolicyAlgorithm, low: float, high: float) -> Iterator[list[BoundedTarget]]:
    """While inside, the agent's target networks return values clipped to ``[low, high]``; the agent's own
    networks are back in place afterwards, whatever happens inside.

    :param algo: a DQN-like agent (``X_target`` network attributes)
    :param low: the least value any return can take (see :func:`value_range`)
    :param high: the greatest
    :return: the bounded stand-ins, whose ``clipped`` / ``seen`` counts say how often the bound acted

    Example::

        import gymnasium as gym
        from stable_baselines3 import DQN
        from sb3_plugins.value_bound import bounded_targets

        agent = DQN("MlpPolicy", gym.make("CartPole-v1"), learning_starts=10, seed=0).learn(50)
        with bounded_targets(agent, 0.0, 100.0) as bounded:
            agent.train(gradient_steps=4, batch_size=8)
        print(bounded[0].seen)  # 4 batches of 8 next observations x 2 actions
    """
    names = target_network_names(algo)
    originals = {name: getattr(algo, name + "_target") for name in names}
    stand_ins = [BoundedTarget(target, low, high) for target in originals.values()]
    try:
        for name, stand_in in zip(names, stand_ins):
            setattr(algo, name + "_target", stand_in)
        yield stand_ins
    finally:
        for name, target in originals.items():
            setattr(algo, name + "_target", target)
