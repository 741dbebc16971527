"""How wrong is the dream? Model rollouts compared with the real env along the same actions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from dream_envs.checks import check_int
from dream_envs.models.calibration import DEFAULT_TOLERANCE, cutoff_scores, open_loop, precision_recall, spearman
from dream_envs.models.ensemble import EnsembleDynamics
from dream_envs.spaces import spaces_equal

__all__ = [
    "PROPAGATIONS",
    "Calibration",
    "CompoundingError",
    "calibration",
    "compounding_error",
    "k_step_error",
    "real_segments",
    "spearman",
]


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
    check_int("length", length)
    check_int("n_segments", n_segments)
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


PROPAGATIONS = ("single", "mean", "ts1")


def _check_model_env(model: EnsembleDynamics, env: gym.Env) -> None:
    if not model.fitted:
        raise ValueError("the model was never fitted; fit it (or load a saved one) before diagnosing it")
    if not spaces_equal(env.observation_space, model.observation_space) or not spaces_equal(
        env.action_space, model.action_space
    ):
        raise ValueError(
            f"model spaces ({model.observation_space}, {model.action_space}) differ from the env's "
            f"({env.observation_space}, {env.action_space})"
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
    :param propagation: ``"mean"`` (elite mean), ``"single"`` (best elite) or ``"ts1"`` (one elite per row, sampled)
    :param seed: seeds the real env, the random policy and the model's sampling
    :return: ``{k: array of obs_dim mean absolute errors}``
    """
    curve = compounding_error(model, env, max(_horizons(horizons)), n_segments, policy, (propagation,), seed)
    return {k: curve.errors[propagation][k - 1] for k in _horizons(horizons)}


def _horizons(horizons: Sequence[int]) -> list[int]:
    values = sorted({int(k) for k in horizons})
    if not values or values[0] < 1:
        raise ValueError(f"horizons must be integers >= 1, got {list(horizons)!r}")
    return values


@dataclass
class CompoundingError:
    """Open-loop error of a model against the real env, step by step (from :func:`compounding_error`).

    :param errors: ``{propagation: array max_horizon x obs_dim}``: mean absolute error after k = 1..max_horizon
        model steps, per observation dimension, in the env's units
    :param obs_std: standard deviation of each observation dimension over the real segments (the scale)
    :param n_segments: real segments averaged over
    :param max_horizon: the longest rollout

    Example::

        import gymnasium as gym
        from dream_envs import EnsembleDynamics, TransitionBuffer
        from dream_envs.diagnostics import compounding_error

        env = gym.make("Pendulum-v1")
        model = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=3, num_elites=2, seed=0)
        model.fit(TransitionBuffer.from_env(env).collect(env, 1000, seed=0), max_epochs=3, seed=0)
        curve = compounding_error(model, env, max_horizon=5, n_segments=20, seed=1)
        print(curve.at(5)["mean"])  # error per dimension after 5 steps, elite mean
    """

    errors: dict[str, np.ndarray]
    obs_std: np.ndarray
    n_segments: int
    max_horizon: int

    def at(self, k: int) -> dict[str, np.ndarray]:
        """The error per dimension after ``k`` steps, for each propagation."""
        if not 1 <= k <= self.max_horizon:
            raise ValueError(f"k must be in [1, {self.max_horizon}], got {k!r}")
        return {name: curve[k - 1] for name, curve in self.errors.items()}


def compounding_error(
    model: EnsembleDynamics,
    env: gym.Env,
    max_horizon: int = 50,
    n_segments: int = 200,
    policy: Callable[[np.ndarray], Any] | None = None,
    propagations: Sequence[str] = PROPAGATIONS,
    seed: int | None = None,
) -> CompoundingError:
    """From real start states, roll the model ``k = 1..max_horizon`` steps along the real actions and compare with
    the real env: the best single elite, the elite mean and TS-1 (one elite per rollout step, sampled).

    :param model: a fitted model for ``env``'s spaces
    :param env: the real env (a fresh seed makes its segments held-out data)
    :param max_horizon: the longest rollout (>= 1)
    :param n_segments: real segments of ``max_horizon`` steps that do not end early
    :param policy: ``obs -> action`` in the real env; uniform random when ``None``
    :param propagations: any of ``"single"``, ``"mean"``, ``"ts1"``
    :param seed: seeds the real env, the random policy and TS-1's draws
    """
    _check_model_env(model, env)
    check_int("max_horizon (k)", max_horizon)
    unknown = set(propagations) - set(PROPAGATIONS)
    if unknown or not propagations:
        raise ValueError(f"propagations must be among {PROPAGATIONS}, got {list(propagations)!r}")
    real_obs, actions = real_segments(env, max_horizon, n_segments, policy=policy, seed=seed)
    first_obs = torch.as_tensor(real_obs[:, 0], device=model.device)
    actions_t = torch.as_tensor(actions, device=model.device)
    errors = {}
    for name in propagations:
        generator = torch.Generator(device=model.device).manual_seed(0 if seed is None else int(seed))
        imagined = open_loop(model, first_obs, actions_t, name, generator)[0].cpu().numpy()
        errors[name] = np.abs(imagined - real_obs[:, 1:].transpose(1, 0, 2)).mean(axis=1)  # (T, obs_dim)
    return CompoundingError(errors, real_obs.reshape(-1, real_obs.shape[-1]).std(0), n_segments, max_horizon)


@dataclass
class Calibration:
    """Does the ensemble's disagreement tell where the model is wrong? (from :func:`calibration`)

    Disagreement is the one the uncertainty cutoff compares (:meth:`EnsembleDynamics.disagreement`: in standard
    deviations of each dimension's one-step change, worst dimension). One-step errors are in those same units;
    k-step errors, after ``horizon`` steps of the elite mean along the real actions, are the worst dimension's error
    over its real standard deviation (:attr:`EnsembleDynamics.obs_scale`), the tolerance's units
    (:mod:`dream_envs.models.calibration`).

    :param one_step_spearman: rank correlation of one-step disagreement with one-step error, held-out real pairs
    :param k_step_spearman: rank correlation of the largest accumulated disagreement along a k-step rollout (elite
        mean) with its error after k steps
    :param horizon: the k of the k-step figures
    :param reliability: ``bins x 2``: mean disagreement and mean one-step error per disagreement decile
    :param threshold: the cutoff's disagreement threshold (the model's ``"auto"`` one unless given)
    :param tolerance: a k-step rollout whose error exceeds this (in real standard deviations) is "bad"
    :param cutoff_precision: of the rollouts the cutoff truncates within k steps, the fraction that are bad
    :param cutoff_recall: of the bad rollouts, the fraction the cutoff truncates
    :param bad_fraction: fraction of k-step rollouts that are bad
    :param cut_fraction: fraction of k-step rollouts the cutoff truncates
    :param n_samples: held-out real (state, action) pairs of the one-step figures
    :param one_step: ``2 x n_samples``: disagreement and error of every held-out pair (for plots)
    :param k_step: ``2 x n_segments``: largest accumulated disagreement and k-step error of every rollout (for plots)

    Example::

        import gymnasium as gym
        from dream_envs import EnsembleDynamics, TransitionBuffer
        from dream_envs.diagnostics import calibration

        env = gym.make("Pendulum-v1")
        model = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=3, num_elites=2, seed=0)
        model.fit(TransitionBuffer.from_env(env).collect(env, 1000, seed=0), max_epochs=3, seed=0)
        report = calibration(model, env, horizon=5, n_segments=40, seed=1)
        print(report.one_step_spearman, report.cutoff_precision, report.cutoff_recall)
    """

    one_step_spearman: float
    k_step_spearman: float
    horizon: int
    reliability: np.ndarray
    threshold: float
    tolerance: float
    cutoff_precision: float
    cutoff_recall: float
    bad_fraction: float
    cut_fraction: float
    n_samples: int
    one_step: np.ndarray = field(repr=False)
    k_step: np.ndarray = field(repr=False)


@torch.no_grad()
def calibration(
    model: EnsembleDynamics,
    env: gym.Env,
    horizon: int = 10,
    n_segments: int = 200,
    tolerance: float | None = None,
    threshold: float | None = None,
    policy: Callable[[np.ndarray], Any] | None = None,
    seed: int | None = None,
    min_samples: int = 100,
) -> Calibration:
    """Ensemble disagreement against the true one-step and k-step errors on held-out real segments.

    :param model: a fitted model for ``env``'s spaces
    :param env: the real env (a fresh seed makes its segments held-out data)
    :param horizon: k of the k-step figures and of the cutoff's precision/recall
    :param n_segments: real segments of ``horizon`` steps
    :param tolerance: k-step error (worst dimension, in real standard deviations) above which a rollout is bad;
        default: the one the model's cutoff was calibrated for (0.1)
    :param threshold: the cutoff's threshold; default the model's ``"auto"`` one
    :param policy: ``obs -> action`` in the real env; uniform random when ``None``
    :param seed: seeds the real env and the random policy
    :param min_samples: fewest held-out (state, action) pairs accepted
    """
    _check_model_env(model, env)
    check_int("horizon (k)", horizon)
    if tolerance is None:
        tolerance = model.cutoff_calibration.tolerance if model.cutoff_calibration is not None else DEFAULT_TOLERANCE
    if isinstance(tolerance, bool) or not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise ValueError(f"tolerance must be a number > 0, got {tolerance!r}")
    if n_segments * horizon < min_samples:
        raise ValueError(f"{n_segments} segments x {horizon} steps = {n_segments * horizon} held-out pairs; at "
                         f"least {min_samples} are needed for rank correlations (raise n_segments)")  # fmt: skip
    if threshold is None:
        threshold = float(model.auto_threshold)
        if not np.isfinite(threshold):
            raise ValueError("the model has no 'auto' uncertainty threshold (a file from an earlier version); pass "
                             "threshold=")  # fmt: skip
    real_obs, actions = real_segments(env, horizon, n_segments, policy=policy, seed=seed)
    change = model.out_std[: model.obs_dim].cpu().numpy()  # each dimension's one-step change; 0 where it never moved
    # One step from every real (state, action) pair of the segments.
    states = real_obs[:, :-1].reshape(-1, real_obs.shape[-1])
    flat_actions = actions.reshape(len(states), *actions.shape[2:])
    step = model.step(states, flat_actions, propagation="mean", deterministic=True)
    one_error = np.abs(step.next_obs.cpu().numpy() - real_obs[:, 1:].reshape(len(states), -1))
    one_error = np.where(change > 0, one_error / np.where(change > 0, change, 1.0), 0.0).max(-1)
    one_uncertainty = step.disagreement.cpu().numpy()
    # k steps open loop (elite mean), with the largest accumulated disagreement the cutoff would have seen on the way.
    k_uncertainty, k_error = cutoff_scores(model, real_obs, actions)
    precision, recall = precision_recall(k_uncertainty, k_error, threshold, tolerance)
    deciles = np.quantile(one_uncertainty, np.linspace(0, 1, 11))
    bins = np.clip(np.searchsorted(deciles, one_uncertainty, side="right") - 1, 0, 9)
    reliability = np.array([[one_uncertainty[bins == b].mean(), one_error[bins == b].mean()]
                            for b in range(10) if (bins == b).any()])  # fmt: skip
    return Calibration(
        one_step_spearman=spearman(one_uncertainty, one_error), k_step_spearman=spearman(k_uncertainty, k_error),
        horizon=horizon, reliability=reliability, threshold=float(threshold), tolerance=float(tolerance),
        cutoff_precision=precision, cutoff_recall=recall, bad_fraction=float((k_error > tolerance).mean()),
        cut_fraction=float((k_uncertainty > threshold).mean()), n_samples=len(states),
        one_step=np.stack([one_uncertainty, one_error]), k_step=np.stack([k_uncertainty, k_error]),
    )  # fmt: skip
