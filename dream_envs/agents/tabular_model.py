"""The tabular model of Dyna-Q: every observed outcome of every (state, action), kept as counts."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import torch

from dream_envs.checks import check_bool, check_int, check_number

__all__ = ["TabularModel"]


class TabularModel:
    """Counts of observed outcomes ``(reward, next_state, terminated)`` per ``(state, action)``, in dense tables
    shaped ``(n_states, n_actions, slots)``, so that a stochastic transition keeps all its outcomes (never
    overwritten) and a batch of planning samples is drawn with a few numpy operations.

    :param n_states: size of the Discrete observation space (states are 0 .. n_states - 1)
    :param n_actions: size of the Discrete action space (actions are 0 .. n_actions - 1)
    :param slots: outcomes kept per pair before the tables grow (they double when a pair needs more)

    Example::

        import numpy as np
        from dream_envs.agents import TabularModel

        model = TabularModel(n_states=3, n_actions=2)
        model.observe(0, 1, reward=0.0, next_state=1, terminated=False)
        model.observe(0, 1, reward=0.0, next_state=2, terminated=False)  # slippery: both outcomes are kept
        print(model.probabilities(0, 1), model.sample(np.array([0]), np.array([1]), np.random.default_rng(0)))
    """

    def __init__(self, n_states: int, n_actions: int, slots: int = 2):
        n_states, n_actions = check_int("n_states", n_states), check_int("n_actions", n_actions)
        slots = check_int("slots", slots)
        self.n_states, self.n_actions = n_states, n_actions
        shape = (n_states, n_actions, slots)
        self.counts = np.zeros(shape, dtype=np.int64)
        self.rewards = np.zeros(shape)
        self.next_states = np.zeros(shape, dtype=np.int64)
        self.terminated = np.zeros(shape, dtype=bool)
        self.tried_pairs: list[tuple[int, int]] = []  # in order of first visit: uniform planning samples
        self.predecessors: dict[int, set[tuple[int, int]]] = defaultdict(set)

    def observe(self, state: int, action: int, reward: float, next_state: int, terminated: bool) -> None:
        """Count one real outcome of ``(state, action)``.

        :raises ValueError: for a state or action outside the tables (a negative one would count for another pair,
            from the end of the table), a non-finite reward, or a ``terminated`` that is not a boolean
        """
        state = check_int("state", state, 0, self.n_states - 1)
        action = check_int("action", action, 0, self.n_actions - 1)
        next_state = check_int("next_state", next_state, 0, self.n_states - 1)
        reward = check_number("reward", reward, -math.inf, math.inf, low_open=True, high_open=True)
        terminated = check_bool("terminated", terminated)
        counts = self.counts[state, action]
        if not counts.any():
            self.tried_pairs.append((state, action))
        used = counts > 0
        same = used & (self.rewards[state, action] == reward) & (self.next_states[state, action] == next_state)
        same &= self.terminated[state, action] == terminated
        if same.any():
            counts[np.argmax(same)] += 1
            return
        if used.all():
            self._grow()
        slot = int(np.argmin(self.counts[state, action] > 0))
        self.counts[state, action, slot] = 1
        self.rewards[state, action, slot] = reward
        self.next_states[state, action, slot] = next_state
        self.terminated[state, action, slot] = terminated
        self.predecessors[next_state].add((state, action))

    def _grow(self) -> None:
        def doubled(table: np.ndarray) -> np.ndarray:
            return np.concatenate([table, np.zeros_like(table)], axis=2)

        self.counts, self.rewards = doubled(self.counts), doubled(self.rewards)
        self.next_states, self.terminated = doubled(self.next_states), doubled(self.terminated)

    def tried(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return self.counts[states, actions].sum(-1) > 0

    def probabilities(self, state: int, action: int) -> np.ndarray:
        """Empirical probability of each outcome slot of one pair (zeros for an untried pair)."""
        counts = self.counts[state, action]
        total = counts.sum()
        return counts / total if total else counts.astype(float)

    def sample(self, states: np.ndarray, actions: np.ndarray, rng: np.random.Generator):
        """One outcome per (state, action) row, drawn in proportion to its count; rows must be tried pairs.

        :return: ``(rewards, next_states, terminated)``, each shaped like ``states``
        """
        counts = self.counts[states, actions]  # (K, slots)
        cumulative = counts.cumsum(-1)
        draw = rng.random(len(states)) * cumulative[:, -1]
        slot = (cumulative <= draw[:, None]).sum(-1)
        return (self.rewards[states, actions, slot], self.next_states[states, actions, slot],
                self.terminated[states, actions, slot])  # fmt: skip

    def expected_target(self, state: int, action: int, q: np.ndarray, gamma: float) -> float:
        """Sum over outcomes of p * (r + gamma * max_a' Q(s', a')) (no bootstrap past a termination)."""
        p = self.probabilities(state, action)
        values = q[self.next_states[state, action]].max(-1) * ~self.terminated[state, action]
        return float(p @ (self.rewards[state, action] + gamma * values))

    # ------------------------------------------------------------------ persistence (plain arrays only)
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only, so that a saved agent loads with ``weights_only=True``."""
        tried = np.array(self.tried_pairs, dtype=np.int64).reshape(-1, 2)
        tables = (self.counts, self.rewards, self.next_states, self.terminated, tried)
        names = ("counts", "rewards", "next_states", "terminated", "tried_pairs")
        return {name: torch.from_numpy(np.ascontiguousarray(table)) for name, table in zip(names, tables)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        state = {k: v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in state.items()}
        counts = state["counts"]
        if counts.shape[:2] != (self.n_states, self.n_actions):
            raise ValueError(f"model tables of shape {counts.shape} do not fit {self.n_states} states x "
                             f"{self.n_actions} actions")  # fmt: skip
        self.counts, self.rewards = counts.astype(np.int64), np.asarray(state["rewards"], dtype=float)
        self.next_states = np.asarray(state["next_states"], dtype=np.int64)
        self.terminated = np.asarray(state["terminated"], dtype=bool)
        self.tried_pairs = [tuple(int(v) for v in pair) for pair in np.asarray(state["tried_pairs"])]
        self.predecessors = defaultdict(set)
        for s, a, slot in zip(*np.nonzero(self.counts)):
            self.predecessors[int(self.next_states[s, a, slot])].add((int(s), int(a)))
