"""MuZero's replay: each env's stream of searched states in its own row, prioritised sampling, and the K-step
unrolled targets (actions, rewards, n-step values, search policies) gathered for a whole batch at once."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dream_envs.io import ModelFileError, load_torch_file, save_torch_file

__all__ = ["REPLAY_FORMAT", "MuZeroReplay", "UnrollTargets"]

REPLAY_FORMAT = "dream-envs/muzero-replay"
REPLAY_FORMAT_VERSION = 1
# The per-slot arrays (n_envs x slots x ...), their dtypes, and what an unused slot holds.
_ARRAYS = {"obs": (np.float32, 0), "action": (np.int64, -1), "reward": (np.float32, 0),
           "root_value": (np.float32, 0), "policy": (np.float32, 0), "last": (np.int64, -1),
           "terminal": (np.bool_, False), "priority": (np.float64, 0)}  # fmt: skip


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

    :meth:`save` and :meth:`load` keep a replay in a file (``MuZero.save_replay_buffer``/``load_replay_buffer``).

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
        self._searched = 0  # len(self), kept as a count: MuZero asks for it at every real step

    def __len__(self) -> int:
        """Searched states stored (positions an unroll can start from)."""
        return self._searched

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
        self._searched += self.n_envs

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

    def truncate_open_episodes(self) -> None:
        """End every episode still being played at its newest searched state, as a time limit would: that state
        becomes the final one (no action; its search's value bootstraps the targets before it).

        Called when the envs were reset under the replay (a new ``learn``, a loaded replay): the next state of a row
        belongs to another episode, and targets must not run across (SB3's ``truncate_last_traj`` does the same).
        """
        for env in np.flatnonzero(self.ptr > self.episode_start):
            at = self.ptr[env] - 1
            self.action[env, at] = -1
            self.terminal[env, at] = False
            self.priority[env, at] = 0.0
            self.last[env, self.episode_start[env] : at + 1] = at
            self.episode_start[env] = self.ptr[env]
            self._searched -= 1

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the replay atomically (a failed write keeps the old file): every stored state, its targets'
        ingredients and priorities, as tensors (no pickled objects)."""
        width = int(self.ptr.max())
        payload = {
            "format": REPLAY_FORMAT, "format_version": REPLAY_FORMAT_VERSION, "n_envs": self.n_envs,
            "obs_shape": list(self.obs_shape), "n_actions": self.n_actions, "max_priority": self.max_priority,
            "ptr": torch.from_numpy(self.ptr.copy()), "episode_start": torch.from_numpy(self.episode_start.copy()),
            **{name: torch.from_numpy(np.ascontiguousarray(getattr(self, name)[:, :width])) for name in _ARRAYS},
        }  # fmt: skip
        return save_torch_file(path, payload)

    @classmethod
    def load(cls, path: str | os.PathLike, alpha: float = 1.0) -> MuZeroReplay:
        """A replay written by :meth:`save`, loaded safely (``weights_only=True``: no code runs).

        :param path: the file
        :param alpha: the priority exponent to sample with (the priorities themselves are stored)
        :raises FileNotFoundError: no file at ``path``
        :raises ModelFileError: truncated, corrupted or foreign file, or arrays that do not fit together
        """
        payload = load_torch_file(path, REPLAY_FORMAT, REPLAY_FORMAT_VERSION, "MuZero replay buffer")
        source = repr(str(path))
        try:
            n_envs, n_actions = int(payload["n_envs"]), int(payload["n_actions"])
            obs_shape = tuple(int(d) for d in payload["obs_shape"])
            arrays = {name: _array(payload, name) for name in (*_ARRAYS, "ptr", "episode_start")}
            max_priority = float(payload["max_priority"])
        except KeyError as error:
            raise ModelFileError(f"{source} has no entry {error}: the file is damaged or was not written by "
                                 "MuZeroReplay.save") from None  # fmt: skip
        except (TypeError, ValueError) as error:
            raise ModelFileError(f"{source} has a damaged header ({error})") from None
        problem = _check_arrays(arrays, n_envs, obs_shape, n_actions, max_priority)
        if problem is not None:
            raise ModelFileError(f"{source} holds a damaged MuZero replay: {problem}")
        width = int(arrays["ptr"].max())
        replay = cls(n_envs, obs_shape, n_actions, alpha, capacity=max(2 * width, 1024))
        for name in _ARRAYS:
            getattr(replay, name)[:, :width] = arrays[name]
        replay.ptr, replay.episode_start = arrays["ptr"].copy(), arrays["episode_start"].copy()
        replay.max_priority = max_priority
        replay._searched = int((arrays["action"] >= 0).sum())
        return replay

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


def _array(payload: dict[str, Any], name: str) -> np.ndarray:
    value = payload[name]
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"its {name!r} entry is a {type(value).__name__}, not a tensor")
    return value.numpy()


def _check_arrays(arrays: dict[str, np.ndarray], n_envs: int, obs_shape: tuple[int, ...], n_actions: int,
                  max_priority: float) -> str | None:  # fmt: skip
    """What is wrong with a loaded replay's arrays, or None: shapes, dtypes, values a sampler or the targets would
    read out of bounds or as NaN, and the layout of each env's row (states up to ``ptr``, then empty slots)."""
    if n_envs < 1 or n_actions < 1 or any(d < 1 for d in obs_shape):
        return f"n_envs {n_envs}, n_actions {n_actions} and obs_shape {obs_shape} must be positive"
    ptr, start = arrays["ptr"], arrays["episode_start"]
    if ptr.shape != (n_envs,) or start.shape != (n_envs,) or ptr.dtype != np.int64 or start.dtype != np.int64:
        return f"ptr and episode_start must be {n_envs} int64 values each"
    width = int(ptr.max())
    if not (0 <= start).all() or not (start <= ptr).all():
        return f"episode starts {start.tolist()} do not lie within the rows' lengths {ptr.tolist()}"
    trailing = {"obs": obs_shape, "policy": (n_actions,)}
    for name, (dtype, _) in _ARRAYS.items():
        array = arrays[name]
        shape = (n_envs, width, *trailing.get(name, ()))
        if array.shape != shape or array.dtype != dtype:
            return f"{name} is {array.dtype} {array.shape}, expected {np.dtype(dtype)} {shape}"
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            return f"{name} holds NaN or inf values"
    action, last, priority = arrays["action"], arrays["last"], arrays["priority"]
    if not (-1 <= action).all() or not (action < n_actions).all() or not (-1 <= last).all() or not (last < width).all():
        return f"actions must lie in -1..{n_actions - 1} and final-state indices in -1..{width - 1}"
    if not (priority >= 0).all() or not (np.isfinite(max_priority) and max_priority > 0):
        return "priorities must be finite and >= 0 (their maximum > 0)"
    slots = np.arange(width)
    empty = slots >= ptr[:, None]  # (n_envs, width): past each row's newest state
    if (action[empty] != -1).any():
        return "a slot past its row's newest state holds an action"
    playing = (slots >= start[:, None]) & ~empty  # the episode each env is still playing
    if (action[playing] < 0).any() or (last[playing] != -1).any():
        return "an episode still being played holds a final state"
    return None
