"""How wrong is the dream? Model rollouts compared with the real env along the same actions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from dream_envs.models.ensemble import EnsembleDynamics
from dream_envs.spaces import spaces_equal

__all__ = ["real_segments", "k_step_error"]


def real_segments(
    env: gym.Env,
    length: int,
    n_segments: int,
    policy: Callable[[np.ndarray], Any] | None = None,
    seed: int | None = None,
    max_steps: int = 1_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut real trajectories into non-overlapping segments of ``length`` steps that do not end early.

    :return: observations ``S x (length + 1) x obs_dim`` and actions ``S x length [x act_dim]``
    """
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be an integer >= 1, got {length!r}")
    if not isinstance(n_segments, int) or n_segments < 1:
        raise ValueError(f"n_segments must be an integer >= 1, got {n_segments!r}")
    env.action_space.seed(seed)
    obs_runs, act_runs = [], []
    obs, _ = env.reset(seed=seed)
    seg_obs, seg_act = [np.asarray(obs, np.float32).reshape(-1)], []
    for _ in range(max_steps):
        action = env.action_space.sample() if policy is None else policy(obs)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
            seg_obs, seg_act = [np.asarray(obs, np.float32).reshape(-1)], []
            continue
        seg_act.append(np.asarray(action))
        seg_obs.append(np.asarray(obs, np.float32).reshape(-1))
        if len(seg_act) == length:
            obs_runs.append(np.stack(seg_obs))
            act_runs.append(np.stack(seg_act))
            if len(obs_runs) == n_segments:
                return np.stack(obs_runs), np.stack(act_runs)
            seg_obs, seg_act = [seg_obs[-1]], []
    raise RuntimeError(
        f"collected only {len(obs_runs)} of {n_segments} segments of {length} steps in {max_steps} real steps: "
        "episodes end too early for this length"
    )


@torch.no_grad()
def k_step_error(
    model: EnsembleDynamics,
    env: gym.Env,
    horizons: Sequence[int] = (1, 10),
    n_segments: int = 200,
    policy: Callable[[np.ndarray], Any] | None = None,
    propagation: str = "mean",
    seed: int | None = None,
) -> dict[int, np.ndarray]:
    """Mean absolute error per observation dimension after ``k`` open-loop model steps from real states.

    The model is rolled along the actions the real env took, starting from the real state, for every ``k``
    in ``horizons``; the error after ``k`` steps is averaged over ``n_segments`` real segments.

    :param model: a fitted model for ``env``'s spaces
    :param env: the real env
    :param horizons: the ``k`` values (each >= 1)
    :param n_segments: number of real segments (each as long as the largest ``k``)
    :param policy: ``obs -> action`` for the real segments; uniform random when ``None``
    :param propagation: ``"mean"`` (elite mean, deterministic) or ``"ts1"`` (one elite per row, sampled)
    :param seed: seeds the real env, the random policy and the model's sampling
    :return: ``{k: array of obs_dim mean absolute errors}``
    """
    if not spaces_equal(env.observation_space, model.observation_space) or not spaces_equal(
        env.action_space, model.action_space
    ):
        raise ValueError(
            f"model spaces ({model.observation_space}, {model.action_space}) differ from the env's "
            f"({env.observation_space}, {env.action_space})"
        )
    horizons = sorted({int(k) for k in horizons})
    if not horizons or horizons[0] < 1:
        raise ValueError(f"horizons must be integers >= 1, got {horizons!r}")
    real_obs, actions = real_segments(env, horizons[-1], n_segments, policy=policy, seed=seed)
    generator = torch.Generator(device=model.device).manual_seed(0 if seed is None else int(seed))
    state = torch.as_tensor(real_obs[:, 0], device=model.device)  # (S, obs_dim)
    actions_t = torch.as_tensor(actions, device=model.device)
    errors: dict[int, np.ndarray] = {}
    for t in range(horizons[-1]):
        state = model.step(
            state,
            actions_t[:, t],
            generator=generator,
            propagation=propagation,
            deterministic=propagation == "mean",
        ).next_obs
        if t + 1 in horizons:
            errors[t + 1] = np.abs(state.cpu().numpy() - real_obs[:, t + 1]).mean(axis=0)
    return errors
