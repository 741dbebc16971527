"""Tabular Dyna-Q (Sutton & Barto, ch. 8), with prioritized sweeping and Dyna-Q+ as options of the same class."""

from __future__ import annotations

import heapq
import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from dream_envs.agents.base import ModelBasedAgent
from dream_envs.agents.tabular_model import TabularModel
from dream_envs.checks import check_bool, check_int, check_number, check_probability

__all__ = ["DynaQ"]


class DynaQ(ModelBasedAgent):
    """Q-learning from real steps plus ``planning_steps`` updates from a learned tabular model after each one.

    The model (:class:`TabularModel`) keeps every observed outcome of a (state, action) as counts, so stochastic
    transitions (slippery FrozenLake) are sampled in proportion, never overwritten by the last one seen.

    - Plain Dyna-Q: after each real step, ``planning_steps`` (state, action) pairs are drawn uniformly from the
      tried ones, an outcome of each from the model, and all of them updated together from the same Q table
      (one numpy step, no Python loop over the samples; a pair drawn m times moves as m sequential updates would).
    - ``prioritized_sweeping=True``: instead of uniform draws, a priority queue of pairs whose value would change
      by more than ``priority_threshold``; each update of a pair pushes its predecessors (expected updates over
      the model's outcomes, as for stochastic environments).
    - ``kappa > 0`` (Dyna-Q+): planning rewards get the bonus ``kappa * sqrt(steps since the pair was last tried
      for real)``, and actions never tried from a visited state may be planned (leading back to that state with
      reward 0), so a changed environment is re-explored.

    Needs Discrete observation and action spaces (FrozenLake, Taxi, CliffWalking); for continuous states use
    DQN + :class:`~sb3_plugins.DynaCallback`, the neural Dyna agent.

    :param env: the real env (an id, a gymnasium Env, or a VecEnv of one env)
    :param learning_rate: step size alpha of every Q update
    :param gamma: discount factor
    :param exploration_rate: epsilon of the epsilon-greedy behaviour (ties between greedy actions broken at random)
    :param planning_steps: model updates per real step (0: plain Q-learning)
    :param prioritized_sweeping: plan by priority instead of uniformly
    :param priority_threshold: smallest priority that enters the queue (prioritized sweeping)
    :param kappa: Dyna-Q+ exploration bonus weight (0: off)
    :param initial_q: initial value of every Q entry
    :param seed: seeds exploration, planning draws and the env
    :param verbose: 1 prints SB3's log table every ``log_interval`` episodes
    :param tensorboard_log: folder for TensorBoard logs, or None

    Example::

        import gymnasium as gym
        from stable_baselines3.common.evaluation import evaluate_policy
        from dream_envs.agents import DynaQ

        env = gym.make("FrozenLake-v1", is_slippery=False)
        agent = DynaQ(env, planning_steps=20, seed=0).learn(3_000)
        print(evaluate_policy(agent, env, n_eval_episodes=1))  # (1.0, 0.0): the goal is reached
    """

    _hyperparams = ("learning_rate", "gamma", "exploration_rate", "planning_steps", "prioritized_sweeping",
                    "priority_threshold", "kappa", "initial_q", "seed", "verbose", "tensorboard_log")  # fmt: skip

    def __init__(
        self,
        env: gym.Env | VecEnv | str,
        learning_rate: float = 0.1,
        gamma: float = 0.95,
        exploration_rate: float = 0.1,
        planning_steps: int = 5,
        prioritized_sweeping: bool = False,
        priority_threshold: float = 1e-4,
        kappa: float = 0.0,
        initial_q: float = 0.0,
        seed: int | None = None,
        verbose: int = 0,
        tensorboard_log: str | None = None,
    ):
        learning_rate = check_number("learning_rate", learning_rate, 0.0, 1.0, low_open=True)  # 0 learns nothing
        gamma = check_probability("gamma", gamma)
        exploration_rate = check_probability("exploration_rate", exploration_rate)
        planning_steps = check_int("planning_steps", planning_steps, minimum=0)
        prioritized_sweeping = check_bool("prioritized_sweeping", prioritized_sweeping)
        # An infinite threshold or bonus would silently switch planning off or swamp every Q value.
        priority_threshold = check_number("priority_threshold", priority_threshold, 0.0, math.inf, high_open=True)
        kappa = check_number("kappa", kappa, 0.0, math.inf, high_open=True)
        initial_q = check_number("initial_q", initial_q, -math.inf, math.inf, low_open=True, high_open=True)
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)
        check_int("verbose", verbose, minimum=0)
        super().__init__(env, seed=seed, verbose=verbose, tensorboard_log=tensorboard_log)
        for name, space in (("observation", self.observation_space), ("action", self.action_space)):
            if not isinstance(space, spaces.Discrete):
                raise ValueError(
                    f"DynaQ needs Discrete observation and action spaces (FrozenLake, Taxi, CliffWalking); this env's "
                    f"{name} space is {space}. For continuous states use DQN + sb3_plugins.DynaCallback."
                )
        self.learning_rate, self.gamma, self.exploration_rate = learning_rate, gamma, exploration_rate
        self.planning_steps, self.prioritized_sweeping = planning_steps, prioritized_sweeping
        self.priority_threshold, self.kappa, self.initial_q = priority_threshold, kappa, initial_q
        n_states, n_actions = int(self.observation_space.n), int(self.action_space.n)
        self._offset = int(self.observation_space.start)  # Discrete(n, start=k): table rows are obs - k
        self.q = np.full((n_states, n_actions), self.initial_q)
        self.model = TabularModel(n_states, n_actions)
        self.last_tried = np.zeros((n_states, n_actions), dtype=np.int64)  # real step of the last real try
        self.visited = np.zeros(n_states, dtype=bool)
        self.planning_updates = 0
        # Planning draws come from their own generator, so the real behaviour of two agents with the same seed
        # differs only through what planning taught them (common random numbers for comparisons).
        self._planning_rng = np.random.default_rng(None if seed is None else [seed, 1])
        self._queue: list[tuple[float, int, int]] = []  # (-priority, state, action); stale entries are skipped
        self._queued: dict[tuple[int, int], float] = {}

    # ------------------------------------------------------------------ acting
    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, None]:  # fmt: skip
        """Actions for one state or a batch of states (SB3's signature, so ``evaluate_policy`` works).

        :param observation: one state of the Discrete observation space (an int, a numpy int, or a whole float such
            as ``3.0``), or a 1-d batch of them
        :param state: unused (no recurrent state); returned as None
        :param episode_start: unused
        :param deterministic: the greedy action (ties: the lowest) instead of the epsilon-greedy one
        :return: ``(actions, None)``; one action for one state
        :raises ValueError: for a state outside the space (a negative one would silently index the Q table from its
            end), a fraction, a boolean, NaN, a non-number, or a batch that is not 1-d
        """
        check_bool("deterministic", deterministic)
        states = self._check_states(observation)
        actions = self._predict(states.reshape(-1), deterministic)
        return (actions[0] if states.ndim == 0 else actions), None

    def _check_states(self, observation: Any) -> np.ndarray:
        """``observation`` as int64 states of the observation space (same shape), or a ``ValueError`` naming the first
        offending value and the valid range."""
        obs = np.asarray(observation)
        low, high = int(self.observation_space.start), int(self.observation_space.start + self.observation_space.n - 1)
        if obs.ndim > 1:
            raise ValueError(f"observation of shape {obs.shape} does not fit the observation space "
                             f"{self.observation_space} (one state, or a 1-d batch of them)")  # fmt: skip
        if obs.dtype.kind not in "iuf":  # booleans, strings, objects: not states, though Python indexes with True
            raise ValueError(f"observation must be an integer in [{low}, {high}] (or a 1-d batch of them), got "
                             f"{observation!r}")  # fmt: skip
        flat = obs.reshape(-1)
        with np.errstate(invalid="ignore"):  # a whole float (3.0) names a state as well as 3 does; 3.5 names none
            valid = np.isfinite(flat) & (flat == np.round(flat)) & (flat >= low) & (flat <= high)
        if not valid.all():
            first = int(np.argmin(valid))
            name = "observation" if obs.ndim == 0 else f"observation[{first}]"
            # check_int names the value and the range; it refuses every float here, and ints outside [low, high].
            check_int(name, float(flat[first]) if obs.dtype.kind == "f" else int(flat[first]), low, high)
        return obs.astype(np.int64)

    def _predict(self, observations: np.ndarray, deterministic: bool) -> np.ndarray:
        rows = self.q[observations.astype(np.int64) - self._offset]
        if deterministic:
            return rows.argmax(-1) + self.action_space.start
        best = rows == rows.max(-1, keepdims=True)
        greedy = (best * self.rng.random(rows.shape)).argmax(-1)  # a random one among tied greedy actions
        explore = self.rng.random(len(rows)) < self.exploration_rate
        actions = np.where(explore, self.rng.integers(rows.shape[1], size=len(rows)), greedy)
        return actions + self.action_space.start

    # ------------------------------------------------------------------ learning
    def _train(self, total_timesteps: int, callback: BaseCallback) -> None:
        while self.num_timesteps < total_timesteps:
            obs = self._last_obs
            actions = self._predict(obs, deterministic=False)
            new_obs, rewards, dones, infos = self.env.step(actions)
            self.num_timesteps += 1
            done, info = bool(dones[0]), infos[0]
            next_obs = info["terminal_observation"] if done else new_obs[0]
            terminated = done and not info.get("TimeLimit.truncated", False)
            state, action = int(obs[0]) - self._offset, int(actions[0]) - self.action_space.start
            self._learn_from_real(state, action, float(rewards[0]), int(next_obs) - self._offset, terminated)
            self._last_obs = new_obs
            callback.update_locals(locals())
            if not callback.on_step():
                return
            if done:
                self._episode_done(info)

    def _learn_from_real(self, state: int, action: int, reward: float, next_state: int, terminated: bool) -> None:
        target = reward + (0.0 if terminated else self.gamma * self.q[next_state].max())
        self.q[state, action] += self.learning_rate * (target - self.q[state, action])
        self.model.observe(state, action, reward, next_state, terminated)
        self.visited[state] = True
        self.last_tried[state, action] = self.num_timesteps
        if self.planning_steps == 0:
            return
        if self.prioritized_sweeping:
            self._push(state, action)
            self._sweep()
        else:
            self._plan()

    def _plan(self) -> None:
        """``planning_steps`` sample updates at once, all from the same Q table."""
        k = self.planning_steps
        if self.kappa > 0:  # Dyna-Q+: any action from a visited state
            visited = np.flatnonzero(self.visited)
            states = visited[self._planning_rng.integers(len(visited), size=k)]
            actions = self._planning_rng.integers(self.q.shape[1], size=k)
        else:
            tried_pairs = self.model.tried_pairs
            pairs = np.asarray(tried_pairs)[self._planning_rng.integers(len(tried_pairs), size=k)]
            states, actions = pairs[:, 0], pairs[:, 1]
        tried = self.model.tried(states, actions)
        rewards, next_states, terminated = self.model.sample(np.where(tried, states, 0), np.where(tried, actions, 0),
                                                             self._planning_rng)  # fmt: skip
        # Never-tried actions (Dyna-Q+ only) lead back to the same state with reward 0.
        rewards, next_states, terminated = (np.where(tried, rewards, 0.0), np.where(tried, next_states, states),
                                            tried & terminated)  # fmt: skip
        if self.kappa > 0:
            rewards = rewards + self.kappa * np.sqrt(self.num_timesteps - self.last_tried[states, actions])
        targets = rewards + self.gamma * self.q[next_states].max(-1) * ~terminated
        # A pair drawn m times gets what m sequential updates towards the same (mean) target give:
        # Q += (1 - (1 - alpha)^m) (target - Q). Adding m separate alpha-steps would overshoot once alpha * m > 1.
        pairs, index, counts = np.unique(states * self.q.shape[1] + actions, return_inverse=True, return_counts=True)
        mean_targets = np.bincount(index, weights=targets) / counts
        q = self.q.reshape(-1)
        q[pairs] += (1.0 - (1.0 - self.learning_rate) ** counts) * (mean_targets - q[pairs])
        self.planning_updates += k

    def _priority(self, state: int, action: int) -> float:
        return abs(self.model.expected_target(state, action, self.q, self.gamma) - self.q[state, action])

    def _push(self, state: int, action: int) -> None:
        priority = self._priority(state, action)
        if priority > self.priority_threshold and priority > self._queued.get((state, action), 0.0):
            self._queued[(state, action)] = priority
            heapq.heappush(self._queue, (-priority, state, action))

    def _sweep(self) -> None:
        """Prioritized sweeping: update the most urgent pairs, then queue their predecessors."""
        for _ in range(self.planning_steps):
            while self._queue:
                negative, state, action = heapq.heappop(self._queue)
                if self._queued.get((state, action)) == -negative:  # not a stale entry
                    break
            else:
                return
            del self._queued[(state, action)]
            target = self.model.expected_target(state, action, self.q, self.gamma)
            self.q[state, action] += self.learning_rate * (target - self.q[state, action])
            self.planning_updates += 1
            for before_state, before_action in self.model.predecessors.get(state, ()):
                self._push(before_state, before_action)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, Any]:
        tables = {"q": self.q, "last_tried": self.last_tried, "visited": self.visited}
        return {**{k: torch.from_numpy(v.copy()) for k, v in tables.items()}, "model": self.model.state_dict(),
                "planning_updates": self.planning_updates}  # fmt: skip

    def _set_state(self, state: dict[str, Any]) -> None:
        q = state["q"].numpy()
        if q.shape != self.q.shape:
            raise ValueError(f"Q table of shape {tuple(q.shape)}, expected {self.q.shape}")
        self.q = q.astype(float)
        self.model.load_state_dict(state["model"])
        self.last_tried, self.visited = state["last_tried"].numpy().copy(), state["visited"].numpy().copy()
        self.planning_updates = int(state["planning_updates"])
