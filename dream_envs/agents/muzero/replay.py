"""MuZero's replay: each env's stream of searched states in its own row, prioritised sampling, and the K-step
unrolled targets (actions, rewards, n-step values, search policies) gathered for a whole batch at once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["MuZeroReplay", "UnrollTargets"]


@dataclass
class UnrollTargets:
    """Targets of a batch of ``B`` positions unrolled ``K`` steps (masks are 1 where a loss applies).

    :param observations: ``(B, ...)`` the observations the unroll starts from
    :param actions: ``(B, K)`` actions fed to the dynamics (random past an episode's end)
    :param rewards: ``(B, K)`` reward after each action
    :param reward_mask: ``(B, K)``
    :param values: ``(B, K + 1)`` n-step bootstrapped value targets
    :param value_mask: ``(B, K + 1)``
    :param policies: ``(B, K + 1, A)`` visit distributions of the searches
    :param policy_mask: ``(B, K + 1)``
    :param next_observations: ``(B, K, ...)`` the real observations the K unrolled states stand for
    :param observation_mask: ``(B, K)`` 1 where that observation exists (up to the episode's final state)

    Example::

        import numpy as np
        from dream_envs.agents.muzero import MuZeroReplay

        replay = MuZeroReplay(n_envs=1, obs_shape=(1,), n_actions=2)
        replay.add_step(np.zeros((1, 1)), np.array([0]), np.array([1.0]), np.array([0.0]), np.full((1, 2), 0.5))
        targets = replay.targets(np.array([0]), np.array([0]), unroll_steps=1, td_steps=3, discount=0.9)
        print(targets.values, targets.value_mask)  # the unroll's last state is not played yet: masked
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    reward_mask: np.ndarray
    values: np.ndarray
    value_mask: np.ndarray
    policies: np.ndarray
    policy_mask: np.ndarray
    next_observations: np.ndarray
    observation_mask: np.ndarray


class MuZeroReplay:
    """Searched states of ``n_envs`` self-play streams, sampled in proportion to ``priority ** alpha``.

    Each env writes its states one after another in its own row, so an unroll from ``(env, t)`` reads
    ``t, t + 1, ...`` of that row. An episode ends with one extra state (its final observation, no action):
    the absorbing state after a termination (value 0), or the state a time limit cut off (value bootstrapped).
    Positions of an episode still being played are sampled too; their targets stop at its newest state.

    :param n_envs: self-play envs
    :param obs_shape: shape of one observation
    :param n_actions: size of the Discrete action space
    :param alpha: priority exponent (0: uniform sampling)
    :param capacity: states per env before the rows grow (they double)

    Example::

        import numpy as np
        from dream_envs.agents.muzero import MuZeroReplay

        replay = MuZeroReplay(n_envs=1, obs_shape=(2,), n_actions=2)
        for t in range(3):
            replay.add_step(np.full((1, 2), t), np.array([1]), np.array([1.0]), np.array([0.5]), np.full((1, 2), 0.5))
        replay.end_episode(0, np.full(2, 3.0), terminated=True, final_value=0.0)
        targets = replay.targets(np.array([0]), np.array([1]), unroll_steps=2, td_steps=5, discount=1.0)
        print(targets.values)  # [[2. 1. 0.]]: two rewards left from state 1, one from 2, none after the end
    """

    def __init__(self, n_envs: int, obs_shape: tuple[int, ...], n_actions: int, alpha: float = 1.0,
                 capacity: int = 1024):  # fmt: skip
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}")
        self.n_envs, self.obs_shape, self.n_actions, self.alpha = n_envs, tuple(obs_shape), n_actions, float(alpha)
        self.obs = np.zeros((n_envs, capacity, *self.obs_shape), np.float32)
        self.action = np.full((n_envs, capacity), -1, np.int64)
        self.reward = np.zeros((n_envs, capacity), np.float32)
        self.root_value = np.zeros((n_envs, capacity), np.float32)
        self.policy = np.zeros((n_envs, capacity, n_actions), np.float32)
        self.last = np.full((n_envs, capacity), -1, np.int64)  # the episode's final state; -1 while it is played
        self.terminal = np.zeros((n_envs, capacity), bool)
        self.priority = np.zeros((n_envs, capacity))
        self.ptr = np.zeros(n_envs, np.int64)
        self.episode_start = np.zeros(n_envs, np.int64)
        self.max_priority = 1.0
        self._rows = np.arange(n_envs)

    def __len__(self) -> int:
        """Searched states stored (positions an unroll can start from)."""
        return int((self.action[:, : self.ptr.max()] >= 0).sum())

    @property
    def capacity(self) -> int:
        return self.action.shape[1]

    def _reserve(self, slots: int) -> None:
        if self.ptr.max() + slots <= self.capacity:
            return
        grow = self.capacity
        for name in ("obs", "action", "reward", "root_value", "policy", "last", "terminal", "priority"):
            old = getattr(self, name)
            fill = -1 if name in ("action", "last") else 0
            extra = np.full((self.n_envs, grow, *old.shape[2:]), fill, old.dtype)
            setattr(self, name, np.concatenate([old, extra], 1))

    def add_step(self, observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray, root_values: np.ndarray,
                 policies: np.ndarray) -> None:  # fmt: skip
        """One searched state per env: what was seen, done, received, and what the search said."""
        self._reserve(2)  # this state, and the final state if the episode ends now
        at = self.ptr
        self.obs[self._rows, at] = observations
        self.action[self._rows, at] = actions
        self.reward[self._rows, at] = rewards
        self.root_value[self._rows, at] = root_values
        self.policy[self._rows, at] = policies
        self.priority[self._rows, at] = self.max_priority  # new states are replayed at least once, soon
        self.ptr += 1

    def end_episode(self, env: int, final_observation: np.ndarray, terminated: bool, final_value: float) -> None:
        """Close ``env``'s episode with its final observation; ``final_value`` is used unless ``terminated``."""
        at = self.ptr[env]
        self.obs[env, at] = final_observation
        self.action[env, at] = -1
        self.root_value[env, at] = 0.0 if terminated else final_value
        self.terminal[env, at] = terminated
        self.priority[env, at] = 0.0
        self.last[env, self.episode_start[env] : at + 1] = at
        self.ptr[env] = self.episode_start[env] = at + 1

    def sample(self, batch_size: int, rng: np.random.Generator, beta: float = 1.0) -> tuple[np.ndarray, ...]:
        """``(envs, positions, importance weights)`` of ``batch_size`` positions drawn by priority."""
        width = int(self.ptr.max())
        weights = self.priority[:, :width] ** self.alpha
        weights[self.action[:, :width] < 0] = 0.0
        flat = weights.ravel()
        total = flat.sum()
        if total <= 0:
            raise ValueError("the replay holds no searched state yet; add steps before sampling")
        probabilities = flat / total
        index = rng.choice(len(flat), size=batch_size, p=probabilities)
        importance = (np.count_nonzero(flat) * probabilities[index]) ** -beta
        return index // width, index % width, importance / importance.max()

    def update_priorities(self, envs: np.ndarray, positions: np.ndarray, priorities: np.ndarray) -> None:
        self.priority[envs, positions] = priorities
        self.max_priority = max(self.max_priority, float(priorities.max()))

    def targets(self, envs: np.ndarray, positions: np.ndarray, unroll_steps: int, td_steps: int, discount: float,
                bootstrap: Callable[[np.ndarray], np.ndarray] | None = None,
                rng: np.random.Generator | None = None) -> UnrollTargets:  # fmt: skip
        """MuZero's targets for unrolls from ``(envs[i], positions[i])``, gathered without a loop over the batch.

        :param unroll_steps: ``K``
        :param td_steps: ``n`` of the n-step value targets
        :param discount: reward discount
        :param bootstrap: observations ``(M, ...)`` -> values ``(M,)`` to bootstrap from (reanalyse: the newest
            network's values); None uses the values stored by the searches
        :param rng: draws the (unused but required) actions past an episode's end
        """
        rng = rng or np.random.default_rng()
        e = envs[:, None]
        last = self.last[envs, positions]
        finished = last >= 0
        end = np.where(finished, last, self.ptr[envs] - 1)[:, None]  # the newest state the targets may use
        terminal_end = (finished & self.terminal[envs, end[:, 0]])[:, None]
        p = positions[:, None] + np.arange(unroll_steps + 1)
        clipped = np.minimum(p, end)
        has_action = (p < end) | (~finished[:, None] & (p == end))

        acting = has_action[:, :unroll_steps]
        random_actions = rng.integers(self.n_actions, size=acting.shape)
        actions = np.where(acting, self.action[e, clipped[:, :unroll_steps]], random_actions)
        rewards = np.where(acting, self.reward[e, clipped[:, :unroll_steps]], 0.0)
        reward_mask = acting | terminal_end  # past a termination the model must predict reward 0

        inside = p <= end
        value_mask = inside | terminal_end
        boot_at = np.minimum(p + td_steps, end)
        steps = np.arange(td_steps)
        reward_index = p[..., None] + steps
        in_window = reward_index < boot_at[..., None]
        window = self.reward[e[..., None], np.minimum(reward_index, end[..., None])]
        discounted = (window * in_window * discount**steps).sum(-1)
        if bootstrap is None:
            boot = self.root_value[e, boot_at]
        else:
            boot = bootstrap(self.obs[e, boot_at].reshape(-1, *self.obs_shape)).reshape(boot_at.shape)
            boot = np.where(self.terminal[e, boot_at], 0.0, boot)
        values = np.where(inside, discounted + discount ** np.maximum(boot_at - p, 0) * boot, 0.0)

        return UnrollTargets(
            observations=self.obs[envs, positions], actions=actions, rewards=rewards.astype(np.float32),
            reward_mask=reward_mask.astype(np.float32), values=values.astype(np.float32),
            value_mask=value_mask.astype(np.float32), policies=self.policy[e, clipped],
            policy_mask=has_action.astype(np.float32), next_observations=self.obs[e, clipped[:, 1:]],
            observation_mask=inside[:, 1:].astype(np.float32),
        )  # fmt: skip
