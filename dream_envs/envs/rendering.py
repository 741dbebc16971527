"""Drawing an imagined observation with the real env's own renderer.

A real env can draw a dream state when its internal ``state`` can be rebuilt from an observation. The table
below says how for the classic-control envs; other envs render nothing and say so at construction.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

__all__ = ["STATE_SETTERS", "StateRenderer"]


def _set_cartpole(env: gym.Env, obs: np.ndarray) -> None:
    env.state = np.asarray(obs, np.float64)


def _set_pendulum(env: gym.Env, obs: np.ndarray) -> None:
    env.state = np.array([np.arctan2(obs[1], obs[0]), obs[2]])
    env.last_u = None  # the torque arrow belongs to a real step; a dream state has none to show


def _set_acrobot(env: gym.Env, obs: np.ndarray) -> None:
    env.state = np.array([np.arctan2(obs[1], obs[0]), np.arctan2(obs[3], obs[2]), obs[4], obs[5]])


def _set_mountain_car(env: gym.Env, obs: np.ndarray) -> None:
    env.state = np.asarray(obs, np.float64)


#: How to put an observation into each real env's internal state, so that its renderer draws it.
STATE_SETTERS: dict[str, Callable[[gym.Env, np.ndarray], None]] = {
    "CartPole-v1": _set_cartpole,
    "Pendulum-v1": _set_pendulum,
    "Acrobot-v1": _set_acrobot,
    "MountainCar-v0": _set_mountain_car,
    "MountainCarContinuous-v0": _set_mountain_car,
}


class StateRenderer:
    """Owns one real env in ``rgb_array`` mode and draws given observations with it.

    :param env_id: a real env id listed in :data:`STATE_SETTERS`
    :raises ValueError: if the env cannot draw a given state

    Example::

        from dream_envs.envs.rendering import StateRenderer

        renderer = StateRenderer("CartPole-v1")
        frame = renderer.render([0.5, 0.0, 0.1, 0.0])  # cart right of centre, pole leaning right
        print(frame.shape)  # (400, 600, 3)
        renderer.close()
    """

    def __init__(self, env_id: str | None):
        if env_id not in STATE_SETTERS:
            raise ValueError(
                f"render_mode='rgb_array' needs a real env that can draw a given state; env_id={env_id!r} is not "
                f"one of {sorted(STATE_SETTERS)}. Use render_mode=None for this model."
            )
        self._set_state = STATE_SETTERS[env_id]
        self._env = gym.make(env_id, render_mode="rgb_array")
        self._env.reset(seed=0)

    def render(self, obs: np.ndarray) -> np.ndarray:
        self._set_state(self._env.unwrapped, np.asarray(obs, np.float64).reshape(-1))
        return self._env.render()

    def close(self) -> None:
        self._env.close()
