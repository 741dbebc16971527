"""A state value learned inside the ensemble: the planner's estimate of the return beyond its horizon."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from dream_envs.checks import check_int, check_number, check_probability, seeded_generator
from dream_envs.models.ensemble import EnsembleDynamics
from dream_envs.models.task_functions import KNOWN_REWARDS, KNOWN_TERMINATIONS, TaskFn, resolve_task_fn

__all__ = ["ModelValueFunction", "ValueFitResult"]


@dataclass
class ValueFitResult:
    """What one :meth:`ModelValueFunction.fit` did, round by round.

    :param losses: mean squared error to the targets over each round's last 10 updates
    :param mean_values: the mean value of the states fitted on, after each round

    Example::

        import gymnasium as gym
        from dream_envs import EnsembleDynamics, TransitionBuffer
        from dream_envs.planning import ModelValueFunction

        env = gym.make("CartPole-v1")
        data = TransitionBuffer.from_env(env).collect(env, 200, seed=0)
        model = EnsembleDynamics(env.observation_space, env.action_space, env_id="CartPole-v1", ensemble_size=2,
                                 num_elites=2, hidden_sizes=(16,), seed=0)
        model.fit(data, max_epochs=2, seed=0)
        value = ModelValueFunction(model, termination_fn="known", rounds=2, rollouts=8, rollout_length=5,
                                   updates=20, seed=0)
        result = value.fit(data.transitions().obs, data.transitions().reward)
        print(result.losses, result.mean_values)  # two rounds
    """

    losses: list[float]
    mean_values: list[float]


class ModelValueFunction:
    """``V(s)``, the discounted return from ``s`` when acting well, fitted by value iteration in the ensemble alone
    (no real steps): the terminal value of an MPC planner (:class:`~dream_envs.planning.MPCPlanner`'s
    ``terminal_value``), as in TD-MPC and LOOP.

    Why: a plan's score only sees ``horizon`` steps. On CartPole (+1 per step) every plan that survives 15 steps
    scores the same, so the planner lets the cart drift until the track's end comes within the horizon, too late
    to stop (docs/mpc.md). ``V`` of the last imagined state tells those plans apart.

    Each fit runs ``rounds`` rounds of: ``rollouts`` imagined rollouts of ``rollout_length`` steps from real start
    states, acting epsilon-greedily on the one-step look-ahead ``Q(s, a) = r + gamma * (1 - done) * V(s')`` (so the
    states fitted are the ones a controller visits, the track's ends included), then ``updates`` gradient steps
    towards ``(1 - epsilon) * max_a Q_target(s, a) + epsilon * mean_a Q_target(s, a)``, under the members' mean
    prediction, with every action of a Discrete space or ``action_samples`` uniform samples of a Box tried in one
    batched model step. That is the value of the epsilon-greedy controller, not of the greedy one: states from
    which even a noisy controller survives score highest. With greedy targets (``max`` alone) CartPole's values
    came out flat near the bound almost everywhere and did not keep the cart on the track. Values are
    bounded to ``[min(r_min, 0), max(r_max, 0)] / (1 - gamma)`` with the rewards' range taken from real data: a
    value can never promise more than any return could give, which keeps the planner from steering towards states
    where an unbounded fit extrapolates high.

    :param model: a fitted ensemble (Discrete or bounded Box actions)
    :param gamma: discount, in (0, 1): the planner must use the same
    :param reward_fn: ``None`` (learned), an env id, ``"known"``, ``"module:function"`` or a callable
        ``(obs, action, next_obs) -> reward``
    :param termination_fn: like ``reward_fn``, returning a bool tensor (``None`` with no learned head: never ends)
    :param hidden_sizes: the value network's hidden layers
    :param rounds: rollout-then-fit rounds per :meth:`fit`
    :param rollouts: imagined rollouts per round, run as one batch
    :param rollout_length: model steps per rollout (a rollout that ends restarts from a real start state)
    :param updates: gradient steps per round
    :param batch_size: states per gradient step
    :param learning_rate: Adam's step size
    :param tau: Polyak rate of the target network
    :param epsilon: probability of a uniformly random action in the rollouts
    :param action_samples: actions tried per state for Box action spaces
    :param pool_size: the most recent imagined states kept to fit on
    :param seed: seeds the network's initial weights and all sampling

    Example::

        import gymnasium as gym
        from dream_envs import EnsembleDynamics, TransitionBuffer
        from dream_envs.planning import ModelValueFunction

        env = gym.make("CartPole-v1")
        buffer = TransitionBuffer.from_env(env).collect(env, 300, seed=0)
        model = EnsembleDynamics(env.observation_space, env.action_space, env_id="CartPole-v1", ensemble_size=2,
                                 num_elites=2, hidden_sizes=(32, 32), seed=0)
        model.fit(buffer, max_epochs=5, seed=0)
        value = ModelValueFunction(model, termination_fn="known", rounds=2, rollouts=32, rollout_length=20,
                                   updates=50, seed=0)
        value.fit(buffer.transitions().obs, buffer.transitions().reward)
        print(value(buffer.transitions().obs[:3]))  # three values in [0, 50]
    """

    def __init__(
        self,
        model: EnsembleDynamics,
        gamma: float = 0.98,
        reward_fn: str | TaskFn | None = None,
        termination_fn: str | TaskFn | None = None,
        hidden_sizes: tuple[int, ...] = (128, 128),
        rounds: int = 8,
        rollouts: int = 256,
        rollout_length: int = 100,
        updates: int = 1000,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        tau: float = 0.01,
        epsilon: float = 0.3,
        action_samples: int = 16,
        pool_size: int = 50_000,
        seed: int | None = None,
    ):
        gamma = check_number("gamma (below 1 for a value of bounded size)", gamma, 0.0, 1.0, low_open=True,
                             high_open=True)  # fmt: skip
        for name, value in (("rounds", rounds), ("rollouts", rollouts), ("rollout_length", rollout_length),
                            ("updates", updates), ("batch_size", batch_size), ("action_samples", action_samples),
                            ("pool_size", pool_size)):  # fmt: skip
            check_int(name, value)
        tau = check_probability("tau", tau, zero=False)
        epsilon = check_probability("epsilon", epsilon)
        learning_rate = check_number("learning_rate", learning_rate, 0.0, math.inf, low_open=True, high_open=True)
        if isinstance(hidden_sizes, int) or not hidden_sizes or any(int(h) != h or h < 1 for h in hidden_sizes):
            raise ValueError(f"hidden_sizes must be a non-empty sequence of positive integers, got {hidden_sizes!r}")
        space = model.action_space
        if isinstance(space, spaces.Box):
            if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
                raise ValueError(f"a Box action space needs finite bounds to sample actions from, got {space}")
        elif not isinstance(space, spaces.Discrete):
            raise ValueError(f"the model's action space must be Discrete or Box, got {space}")
        self.model, self.gamma = model, float(gamma)
        self.reward_fn = resolve_task_fn(reward_fn, KNOWN_REWARDS, "reward_fn", model.env_id)
        self.termination_fn = resolve_task_fn(termination_fn, KNOWN_TERMINATIONS, "termination_fn", model.env_id)
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.rounds, self.rollouts, self.rollout_length = rounds, rollouts, rollout_length
        self.updates, self.batch_size, self.learning_rate, self.tau = updates, batch_size, learning_rate, tau
        self.epsilon, self.action_samples, self.pool_size = epsilon, action_samples, pool_size
        self.device = model.device
        self.generator = seeded_generator(seed, self.device)
        self.network = self._new_network()
        self.state_mean = torch.zeros(model.obs_dim, device=self.device)
        self.state_std = torch.ones(model.obs_dim, device=self.device)
        self.bounds: tuple[float, float] | None = None  # set by fit

    def _new_network(self) -> nn.Sequential:
        seed = int(torch.randint(2**62, (1,), device=self.device, generator=self.generator))
        # Every layer is initialised on the CPU inside the fork, from the CPU generator alone: the network follows
        # ``seed`` and the user's random state (CPU and CUDA) is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            layers: list[nn.Module] = []
            width = self.model.obs_dim
            for hidden in self.hidden_sizes:
                layers += [nn.Linear(width, hidden), nn.SiLU()]
                width = hidden
            network = nn.Sequential(*layers, nn.Linear(width, 1))
        return network.to(self.device)

    @property
    def fitted(self) -> bool:
        return self.bounds is not None

    def _values(self, network: nn.Module, states: torch.Tensor) -> torch.Tensor:
        low, high = self.bounds
        x = (states - self.state_mean) / self.state_std
        return low + (high - low) * torch.sigmoid(network(x).squeeze(-1))

    def __call__(self, states: Any) -> torch.Tensor:
        """Values of a batch of states (``B x obs_dim``, numpy or torch) as a ``B`` tensor on the model's device."""
        if not self.fitted:
            raise RuntimeError("the value function has not been fitted yet: call fit() first")
        states = torch.as_tensor(states, dtype=torch.float32, device=self.device).reshape(-1, self.model.obs_dim)
        with torch.no_grad():
            return self._values(self.network, states)

    # ------------------------------------------------------------------ fitting
    def _candidate_actions(self, rows: int) -> torch.Tensor:
        """``rows x A [x act_dim]`` actions to try in each state."""
        space = self.model.action_space
        if isinstance(space, spaces.Discrete):
            return (torch.arange(int(space.n), device=self.device) + int(space.start)).expand(rows, -1)
        low = torch.as_tensor(space.low, dtype=torch.float32, device=self.device)
        high = torch.as_tensor(space.high, dtype=torch.float32, device=self.device)
        shape = (rows, self.action_samples, *space.shape)
        return low + (high - low) * torch.rand(shape, device=self.device, generator=self.generator)

    @torch.no_grad()
    def _look_ahead(self, network: nn.Module, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``r + gamma * (1 - done) * V(s')`` of every candidate action (mean of the members), ``B x A``, and the
        candidates."""
        rows = states.shape[0]
        actions = self._candidate_actions(rows)
        tried = actions.shape[1]
        flat_states = states.repeat_interleave(tried, dim=0)
        flat_actions = actions.reshape(rows * tried, *actions.shape[2:])
        step = self.model._step(flat_states, flat_actions, None, "mean", True, with_disagreement=False)
        next_states, reward, terminated = step.next_obs, step.reward, step.terminated
        reward, terminated = self.model.with_known_functions(
            flat_states, flat_actions, next_states, reward, terminated, self.reward_fn, self.termination_fn
        )
        future = self._values(network, next_states)
        if terminated is not None:
            future = future * ~terminated
        return (reward + self.gamma * future).reshape(rows, tried), actions

    def _imagine(self, starts: torch.Tensor) -> torch.Tensor:
        """States visited by epsilon-greedy imagined rollouts (those that ended excluded: their value is 0)."""
        rows = self.rollouts
        pick = torch.randint(len(starts), (rows,), device=self.device, generator=self.generator)
        states, visited = starts[pick], []
        for _ in range(self.rollout_length):
            q, actions = self._look_ahead(self.network, states)
            choice = q.argmax(-1)
            explore = torch.rand(rows, device=self.device, generator=self.generator) < self.epsilon
            random_choice = torch.randint(q.shape[1], (rows,), device=self.device, generator=self.generator)
            choice = torch.where(explore, random_choice, choice)
            action = actions[torch.arange(rows, device=self.device), choice]
            step = self.model._step(states, action, self.generator, "ts1", False, with_disagreement=False)
            terminated = self.model.with_known_functions(
                states, action, step.next_obs, step.reward, step.terminated, None, self.termination_fn
            )[1]
            if terminated is None:
                terminated = torch.zeros(rows, dtype=torch.bool, device=self.device)
            visited.append(step.next_obs[~terminated])
            restart = starts[torch.randint(len(starts), (rows,), device=self.device, generator=self.generator)]
            states = torch.where(terminated[:, None], restart, step.next_obs)
        return torch.cat(visited)

    def fit(self, start_states: Any, rewards: Any) -> ValueFitResult:
        """Fit ``V`` from scratch on imagined rollouts that start from real states.

        :param start_states: real observations to start rollouts from (``N x obs_dim``, the buffer's)
        :param rewards: real rewards (any shape), whose range bounds the values
        """
        starts = torch.as_tensor(np.asarray(start_states), dtype=torch.float32, device=self.device)
        if starts.ndim != 2 or starts.shape[1] != self.model.obs_dim:
            raise ValueError(f"start_states must be N x {self.model.obs_dim} (the model's observations), got shape "
                             f"{tuple(starts.shape)}")  # fmt: skip
        rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if len(starts) == 0 or len(rewards) == 0:
            raise ValueError("fit needs at least one real start state and one real reward, got none")
        if not (torch.isfinite(starts).all() and np.isfinite(rewards).all()):
            raise ValueError("start_states and rewards must be finite")
        self.bounds = (min(rewards.min(), 0.0) / (1 - self.gamma), max(rewards.max(), 0.0) / (1 - self.gamma))
        self.state_mean, self.state_std = starts.mean(0), starts.std(0, unbiased=False) + 1e-6
        self.network = self._new_network()
        target = copy.deepcopy(self.network).requires_grad_(False)
        optimizer = torch.optim.Adam(self.network.parameters(), lr=self.learning_rate)
        pool = starts
        losses, mean_values = [], []
        for _ in range(self.rounds):
            pool = torch.cat([pool, self._imagine(starts)])[-self.pool_size :]
            recent = []
            for update in range(self.updates):
                batch = pool[torch.randint(len(pool), (self.batch_size,), device=self.device, generator=self.generator)]
                q = self._look_ahead(target, batch)[0]
                goal = (1 - self.epsilon) * q.max(-1).values + self.epsilon * q.mean(-1)
                loss = (self._values(self.network, batch) - goal).pow(2).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    for param, target_param in zip(self.network.parameters(), target.parameters()):
                        target_param.lerp_(param, self.tau)
                if update >= self.updates - 10:  # the round's last updates, without a sync per step
                    recent.append(loss.detach())
            losses.append(float(torch.stack(recent).mean()))
            mean_values.append(float(self(pool).mean()))
        return ValueFitResult(losses, mean_values)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Tensors and floats only (loads with ``weights_only=True``)."""
        if not self.fitted:
            raise RuntimeError("the value function has not been fitted yet: nothing to save")
        return {"network": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
                "state_mean": self.state_mean.cpu(), "state_std": self.state_std.cpu(),
                "bounds": torch.tensor(self.bounds, dtype=torch.float64)}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a fitted value from :meth:`state_dict`; a network of other sizes is a clear error."""
        try:
            self.network.load_state_dict(state["network"])
        except (RuntimeError, KeyError) as error:
            raise ValueError(
                f"the saved value network does not match hidden_sizes={self.hidden_sizes}: {error}"
            ) from error
        self.network.to(self.device)
        self.state_mean = state["state_mean"].to(self.device, torch.float32)
        self.state_std = state["state_std"].to(self.device, torch.float32)
        low, high = (float(b) for b in state["bounds"])
        self.bounds = (low, high)
