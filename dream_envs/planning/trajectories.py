"""The returns of many candidate action sequences under the ensemble, all particles in one forward pass per step."""

from __future__ import annotations

from collections.abc import Callable

import torch

from dream_envs.checks import check_int, check_number
from dream_envs.models.ensemble import EnsembleDynamics
from dream_envs.models.task_functions import KNOWN_REWARDS, KNOWN_TERMINATIONS, TaskFn, resolve_task_fn

__all__ = ["PARTICLE_PROPAGATIONS", "TrajectoryEvaluator"]

PARTICLE_PROPAGATIONS = ("ts1", "tsinf", "expectation")


class TrajectoryEvaluator:
    """Expected return of ``N`` action sequences of ``H`` steps from one real state, estimated with particles.

    Every candidate is rolled out by ``particles`` particles spread evenly over the ensemble's members; each
    horizon step is ONE batched forward pass in which member ``e`` computes only its own particles (weights
    ``E x in x out``, activations ``E x (N * particles / E) x in``).

    - ``"ts1"`` (PETS TS-1): particles are reassigned to random members at every step.
    - ``"tsinf"`` (TS-infinity): each particle keeps its member for the whole horizon.
    - ``"expectation"``: one deterministic particle per candidate following the mean of all members.

    A step's reward counts only while the particle is alive: after a learned (or given) termination, later
    rewards are dropped, so plans that end an episode early score less on tasks rewarded for staying alive.
    With a ``terminal_value``, a particle still alive after the last step adds ``gamma ** H * V(last state)``.

    :param model: a fitted ensemble
    :param particles: particles per candidate (a multiple of the ensemble size; ignored for ``"expectation"``)
    :param propagation: ``"ts1"``, ``"tsinf"`` or ``"expectation"``
    :param reward_fn: ``None`` (learned), an env id, ``"known"``, ``"module:function"`` or a callable
        ``(obs, action, next_obs) -> reward``
    :param termination_fn: like ``reward_fn``, returning a bool tensor
    :param env_id: the env for ``"known"`` functions (default: the model's)
    :param gamma: discount of the planning objective
    :param terminal_value: ``None``, or a callable mapping ``B x obs_dim`` states to ``B`` values (e.g. a fitted
        :class:`~dream_envs.planning.ModelValueFunction` of the same ``gamma``)

    Example::

        import gymnasium as gym
        import torch
        from dream_envs import EnsembleDynamics, TransitionBuffer
        from dream_envs.planning import TrajectoryEvaluator

        env = gym.make("Pendulum-v1")
        model = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=4, num_elites=4, seed=0)
        model.fit(TransitionBuffer.from_env(env).collect(env, 500, seed=0), max_epochs=2, seed=0)
        evaluator = TrajectoryEvaluator(model, particles=8)
        returns = evaluator.returns(env.reset(seed=0)[0], torch.zeros(16, 10, 1), torch.Generator().manual_seed(0))
        print(returns.shape)  # torch.Size([16])
    """

    def __init__(
        self,
        model: EnsembleDynamics,
        particles: int = 20,
        propagation: str = "ts1",
        reward_fn: str | TaskFn | None = None,
        termination_fn: str | TaskFn | None = None,
        env_id: str | None = None,
        gamma: float = 1.0,
        terminal_value: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        if not isinstance(model, EnsembleDynamics):
            raise TypeError(f"model must be an EnsembleDynamics, got {type(model).__name__}")
        if env_id is not None and not isinstance(env_id, str):
            raise ValueError(f"env_id must be None or a gymnasium env id, got {env_id!r}")
        if terminal_value is not None and not callable(terminal_value):
            raise TypeError(f"terminal_value must be None or a callable, got {type(terminal_value).__name__}")
        if propagation not in PARTICLE_PROPAGATIONS:
            raise ValueError(f"propagation must be one of {PARTICLE_PROPAGATIONS}, got {propagation!r}")
        members = model.config.ensemble_size
        if propagation != "expectation":
            particles = check_int(f"particles (a multiple of the ensemble size {members})", particles)
            if particles % members:
                raise ValueError(f"particles must be a positive multiple of the ensemble size {members}, got "
                                 f"{particles!r}")  # fmt: skip
        gamma = check_number("gamma", gamma, 0.0, 1.0, low_open=True)
        self.model, self.propagation, self.gamma = model, propagation, gamma
        self.terminal_value = terminal_value
        self.particles = 1 if propagation == "expectation" else particles
        env_id = env_id or model.env_id
        spaces = (model.observation_space, model.action_space)  # another env's functions read another layout
        self.reward_fn = resolve_task_fn(reward_fn, KNOWN_REWARDS, "reward_fn", env_id, spaces, model.device)
        self.termination_fn = resolve_task_fn(
            termination_fn, KNOWN_TERMINATIONS, "termination_fn", env_id, spaces, model.device
        )

    @torch.no_grad()
    def returns(self, obs: object, actions: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Mean discounted return over particles of each candidate.

        :param obs: the real state to plan from (``obs_dim``)
        :param actions: ``N x H`` (Discrete) or ``N x H x act_dim`` (Box) candidate sequences
        :param generator: the planner's generator (member draws, Gaussian samples)
        :return: ``N`` returns
        """
        model = self.model
        n, horizon = actions.shape[:2]
        rows = n * self.particles
        state = torch.as_tensor(obs, dtype=torch.float32, device=model.device).reshape(1, -1).expand(rows, -1)
        candidate = torch.arange(rows, device=model.device) // self.particles  # row -> its candidate
        total = torch.zeros(rows, device=model.device)
        alive = torch.ones(rows, dtype=torch.bool, device=model.device)
        discount = 1.0
        members = model.config.ensemble_size
        blocks = (members, rows // members)
        # TS-inf: particle p of every candidate always goes through member p % E (rows sorted into member blocks).
        if self.propagation == "tsinf":
            fixed = torch.argsort(torch.arange(rows, device=model.device) % self.particles % members, stable=True)
        for t in range(horizon):
            action = actions[candidate, t]
            if self.propagation == "expectation":
                step = model._step(state, action, None, "mean", True, with_disagreement=False)
                next_state, reward, terminated = step.next_obs, step.reward, step.terminated
            else:
                # TS-1: a fresh random assignment of rows to members at every step.
                if self.propagation == "ts1":
                    order = torch.randperm(rows, device=model.device, generator=generator)
                else:
                    order = fixed
                next_state, reward, terminated = model.step_members(
                    state[order].reshape(*blocks, -1), action[order].reshape(*blocks, *action.shape[1:]), generator
                )
                back = torch.empty_like(order)
                back[order] = torch.arange(rows, device=model.device)
                next_state, reward = next_state.reshape(rows, -1)[back], reward.reshape(rows)[back]
                terminated = None if terminated is None else terminated.reshape(rows)[back]
            reward, terminated = model.with_known_functions(
                state, action, next_state, reward, terminated, self.reward_fn, self.termination_fn
            )
            total += torch.where(alive, discount * reward, 0.0)  # not `* alive`: NaN * 0 is NaN, the dead's too
            if terminated is not None:
                alive &= ~terminated
            discount *= self.gamma
            state = next_state
        if self.terminal_value is not None:
            total += torch.where(alive, discount * self.terminal_value(state), 0.0)
        return total.reshape(n, self.particles).mean(-1)
