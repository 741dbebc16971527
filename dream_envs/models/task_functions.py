"""Known reward and termination functions of classic-control envs, as batched torch functions.

Each takes ``(obs, action, next_obs)`` (``B x obs_dim``, raw actions ``B`` or ``B x act_dim``, ``B x obs_dim``)
and returns ``B`` rewards (float) or ``B`` termination flags (bool). They mirror gymnasium's own
definitions, so a dream env given them has the real env's exact reward/termination; the tests check each
one against real transitions. A user's callable with the same signature is accepted wherever these are.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["TaskFn", "KNOWN_REWARDS", "KNOWN_TERMINATIONS", "resolve_task_fn"]

TaskFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def cartpole_termination(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    x, theta = next_obs[:, 0], next_obs[:, 2]
    return (x.abs() > 2.4) | (theta.abs() > 12 * 2 * math.pi / 360)


def cartpole_reward(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    # gymnasium gives +1 on every step, the terminating one included.
    return torch.ones(obs.shape[0], dtype=obs.dtype, device=obs.device)


def acrobot_termination(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    cos1, sin1, cos2, sin2 = next_obs[:, 0], next_obs[:, 1], next_obs[:, 2], next_obs[:, 3]
    cos12 = cos1 * cos2 - sin1 * sin2  # cos(theta1 + theta2)
    return -cos1 - cos12 > 1.0


def acrobot_reward(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    return acrobot_termination(obs, action, next_obs).to(obs.dtype) - 1.0


def pendulum_reward(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    theta = torch.atan2(obs[:, 1], obs[:, 0])  # already in [-pi, pi]
    torque = action.reshape(obs.shape[0], -1)[:, 0].clamp(-2.0, 2.0)
    return -(theta**2 + 0.1 * obs[:, 2] ** 2 + 0.001 * torque**2)


def never_terminates(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    return torch.zeros(obs.shape[0], dtype=torch.bool, device=obs.device)


def mountain_car_termination(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    return (next_obs[:, 0] >= 0.5) & (next_obs[:, 1] >= 0.0)


def mountain_car_reward(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    return -torch.ones(obs.shape[0], dtype=obs.dtype, device=obs.device)


def mountain_car_continuous_termination(
    obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor
) -> torch.Tensor:
    return (next_obs[:, 0] >= 0.45) & (next_obs[:, 1] >= 0.0)


def mountain_car_continuous_reward(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    force = action.reshape(obs.shape[0], -1)[:, 0].clamp(-1.0, 1.0)
    bonus = 100.0 * mountain_car_continuous_termination(obs, action, next_obs).to(obs.dtype)
    return bonus - 0.1 * force**2


KNOWN_TERMINATIONS: dict[str, TaskFn] = {
    "CartPole-v1": cartpole_termination,
    "Acrobot-v1": acrobot_termination,
    "Pendulum-v1": never_terminates,
    "MountainCar-v0": mountain_car_termination,
    "MountainCarContinuous-v0": mountain_car_continuous_termination,
}
KNOWN_REWARDS: dict[str, TaskFn] = {
    "CartPole-v1": cartpole_reward,
    "Acrobot-v1": acrobot_reward,
    "Pendulum-v1": pendulum_reward,
    "MountainCar-v0": mountain_car_reward,
    "MountainCarContinuous-v0": mountain_car_continuous_reward,
}


def resolve_task_fn(
    value: str | TaskFn | None, known: dict[str, TaskFn], what: str, env_id: str | None = None
) -> TaskFn | None:
    """Turn ``None`` (learned), an env id, ``"known"`` or a callable into a function (``None``: the learned head).

    :param value: ``None``/``"learned"``, a key of ``known``, ``"known"`` (``env_id``'s), or a callable
        ``(obs, action, next_obs) -> B``
    :param known: the table to look env ids up in
    :param what: ``"reward_fn"`` or ``"termination_fn"``, for error messages
    :param env_id: the env whose function ``"known"`` means
    """
    if value == "known":
        if env_id is None:
            raise ValueError(f"{what}='known' needs env_id= (or a model saved with an env_id)")
        value = env_id
    if value is None or value == "learned":
        return None
    if callable(value):
        return value
    if isinstance(value, str):
        if value in known:
            return known[value]
        raise ValueError(
            f"{what}={value!r} is not an env id with a known function; known ids: {sorted(known)}; "
            f"or pass a callable (obs, action, next_obs) -> tensor, or None to use the learned head"
        )
    raise TypeError(f"{what} must be None, 'learned', an env id or a callable, got {value!r}")
