"""The uncertainty cutoff, calibrated against what it claims to catch: dream rollouts that drift from reality.

The disagreement of one model step (:meth:`EnsembleDynamics.disagreement`) is the spread (standard deviation over
ALL members) of the members' predicted next observations, in units of each dimension's one-step change in the fit
data, worst dimension. The cutoff compares the *accumulated* disagreement: the disagreement summed over the last
``horizon`` steps of an imagined episode (fewer at its start), an estimate of how far the dream may have drifted
over a stretch as long as the calibration's rollouts.

A rollout is *bad* when, after ``horizon`` model steps from a real state along the real actions, the model's
prediction (elite mean) is more than ``tolerance`` real standard deviations off the real state in some dimension.
The cutoff *catches* it when the accumulated disagreement exceeds the threshold at one of its steps. ``"auto"`` is the
threshold that best separates the bad from the good rollouts of real trajectories held out of the fit (F2 score:
recall weighted over precision, as a missed drift costs more than a truncated good rollout). With fewer than
``MIN_BAD_SEGMENTS`` bad held-out rollouts the held-out data cannot place the threshold; it is then extrapolated from
how the error grew with the accumulated disagreement on those rollouts (error ~= c * accumulated disagreement, ``c``
the 75th percentile of their ratio; threshold = tolerance / c). Measured against alternatives (the largest single
step, the dimensions' real spread as unit, elites only, total predictive variance) in docs/uncertainty.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from dream_envs.models.ensemble import EnsembleDynamics

__all__ = [
    "CutoffCalibrationWarning",
    "DEFAULT_HORIZON",
    "DEFAULT_TOLERANCE",
    "MIN_BAD_SEGMENTS",
    "CutoffCalibration",
    "choose_threshold",
    "accumulate",
    "cutoff_scores",
    "open_loop",
    "precision_recall",
    "spearman",
]

DEFAULT_TOLERANCE = 0.1  # real standard deviations, worst observation dimension
DEFAULT_HORIZON = 10  # model steps from a real state
MIN_BAD_SEGMENTS = 10  # bad held-out rollouts needed to place the threshold from data rather than extrapolate
# Error / accumulated disagreement where no held-out rollout exists: the 8 models of docs/uncertainty.md grew 0.06-0.55
# when accurate and up to 1.7 when poor; a model fitted on too little data to hold any run out is a poor one.
_FALLBACK_GROWTH = 0.5


class CutoffCalibrationWarning(UserWarning):
    """The fit could not calibrate the uncertainty cutoff on its data (too short episodes, too little data, a single
    member): ``"auto"`` then means the documented default, or a cutoff that never fires.

    Example::

        import warnings
        import gymnasium as gym
        from dream_envs import EnsembleDynamics, TransitionBuffer
        from dream_envs.models.calibration import CutoffCalibrationWarning

        env = gym.make("CartPole-v1")
        buffer = TransitionBuffer.from_env(env).collect(env, 15, seed=0)  # too few transitions to hold any out
        model = EnsembleDynamics(env.observation_space, env.action_space, ensemble_size=2, num_elites=1, seed=0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(buffer, max_epochs=1, seed=0)
        print([w.category is CutoffCalibrationWarning for w in caught], model.cutoff_calibration.method)
    """


@dataclass
class CutoffCalibration:
    """How ``uncertainty_threshold="auto"`` was derived at the last fit (stored in the model file).

    :param threshold: the threshold of the accumulated disagreement (disagreement summed over ``horizon`` steps)
    :param tolerance: error after ``horizon`` steps (real standard deviations, worst dimension) that makes a rollout bad
    :param horizon: model steps per held-out rollout
    :param method: ``"held-out"`` (placed by the F2 score on held-out rollouts), ``"extrapolated"`` (too few bad
        held-out rollouts: from the error growth) or ``"default"`` (no held-out rollout at all)
    :param n_segments: held-out real rollouts used
    :param n_bad: of those, rollouts whose error exceeded the tolerance
    :param precision: of the held-out rollouts the threshold cuts, the fraction that are bad (NaN if none is cut)
    :param recall: of the bad held-out rollouts, the fraction cut (NaN if none is bad)
    :param spearman: rank correlation of the accumulated disagreement with the error (NaN if undefined)
    :param growth: the ``c`` of ``error ~= c * accumulated disagreement`` on the held-out rollouts (75th percentile)

    The precision and recall are measured on the rollouts that placed the threshold: an optimistic estimate.
    ``dream-envs diagnose`` measures them on fresh real trajectories.

    Example::

        import gymnasium as gym
        import dream_envs

        model = gym.make("Dream-Pendulum-v0").unwrapped.model
        print(model.cutoff_calibration)
    """

    threshold: float
    tolerance: float = DEFAULT_TOLERANCE
    horizon: int = DEFAULT_HORIZON
    method: str = "default"
    n_segments: int = 0
    n_bad: int = 0
    precision: float = float("nan")
    recall: float = float("nan")
    spearman: float = float("nan")
    growth: float = _FALLBACK_GROWTH

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def open_loop(
    model: EnsembleDynamics,
    first_obs: torch.Tensor,
    actions: torch.Tensor,
    propagation: str = "mean",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Roll the model from real states along given actions.

    :param model: a fitted ensemble
    :param first_obs: ``S x obs_dim`` real start states
    :param actions: ``S x T`` discrete or ``S x T x act_dim`` continuous actions
    :param propagation: ``"mean"`` (elite mean, deterministic), ``"single"`` (best elite) or ``"ts1"`` (sampled)
    :param generator: for ``"ts1"``'s draws
    :return: imagined observations ``T x S x obs_dim`` (steps 1..T), within the bounds the dream keeps
        (:meth:`EnsembleDynamics.observation_bounds`), and the disagreement of each step ``T x S``
    """
    state = first_obs
    low, high = model.observation_bounds()
    states, disagreement = [], []
    for t in range(actions.shape[1]):
        step = model._step(state, actions[:, t], generator, propagation, propagation != "ts1")
        state = torch.minimum(torch.maximum(step.next_obs, low), high)
        states.append(state)
        disagreement.append(step.disagreement)
    return torch.stack(states), torch.stack(disagreement)


def accumulate(disagreement: torch.Tensor, window: int) -> torch.Tensor:
    """The accumulated disagreement at every step: the disagreement summed over the last ``window`` steps.

    :param disagreement: ``T x S`` disagreement of each step of ``S`` rollouts
    :param window: steps summed (the model's calibration horizon)
    :return: ``T x S``
    """
    running = disagreement.cumsum(0)
    earlier = torch.cat([torch.zeros_like(running[:window]), running[:-window]])[: len(running)]
    return running - earlier


def cutoff_scores(
    model: EnsembleDynamics,
    real_obs: np.ndarray | torch.Tensor,
    actions: np.ndarray | torch.Tensor,
    window: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Score real segments the way the cutoff sees them.

    :param model: a fitted ensemble
    :param real_obs: ``S x (T + 1) x obs_dim`` real observations of each segment
    :param actions: ``S x T [x act_dim]`` the real actions between them
    :param window: steps the disagreement is accumulated over; default the model's (:attr:`uncertainty_window`)
    :return: the largest accumulated disagreement along each elite-mean rollout ``S`` (the model's calibration
        horizon as window; over a rollout no longer than it, the sum of its steps), and the error after ``T`` steps
        ``S`` (worst dimension, in real standard deviations: ``model.obs_scale``)
    """
    real_obs = torch.as_tensor(real_obs, dtype=torch.float32, device=model.device)
    actions = torch.as_tensor(actions, device=model.device)
    imagined, disagreement = open_loop(model, real_obs[:, 0], actions)
    error = ((imagined[-1] - real_obs[:, -1]).abs() / model.obs_scale).amax(-1)
    accumulated = accumulate(disagreement, window or model.uncertainty_window).amax(0)
    return accumulated.cpu().numpy(), error.cpu().numpy()


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""

    def ranks(values: np.ndarray) -> np.ndarray:
        _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
        ends = np.cumsum(counts)
        return (ends - (counts - 1) / 2.0)[inverse.reshape(-1)]

    rx, ry = ranks(np.asarray(x, float).ravel()), ranks(np.asarray(y, float).ravel())
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def precision_recall(scores: np.ndarray, errors: np.ndarray, threshold: float, tolerance: float) -> tuple[float, float]:
    """Precision and recall of ``scores > threshold`` at catching ``errors > tolerance`` (NaN where undefined)."""
    bad, cut = errors > tolerance, scores > threshold
    precision = float(bad[cut].mean()) if cut.any() else float("nan")
    recall = float(cut[bad].mean()) if bad.any() else float("nan")
    return precision, recall


def choose_threshold(
    scores: np.ndarray,
    errors: np.ndarray,
    tolerance: float = DEFAULT_TOLERANCE,
    horizon: int = DEFAULT_HORIZON,
) -> CutoffCalibration:
    """Place the cutoff's threshold from held-out rollouts (see the module docstring for the rule).

    :param scores: accumulated disagreement of each rollout ``S``
    :param errors: error after ``horizon`` steps ``S`` (real standard deviations, worst dimension)
    :param tolerance: the error that makes a rollout bad
    :param horizon: the rollouts' length
    """
    scores, errors = (np.asarray(v, np.float64).reshape(-1) for v in (scores, errors))
    finite = np.isfinite(scores) & np.isfinite(errors)
    scores, errors = scores[finite], errors[finite]
    if len(scores) == 0:
        return CutoffCalibration(tolerance / _FALLBACK_GROWTH, tolerance, horizon)
    bad = errors > tolerance
    growth = float(np.quantile(errors / np.maximum(scores, 1e-12), 0.75))
    growth = growth if growth > 0 else _FALLBACK_GROWTH
    if bad.sum() >= MIN_BAD_SEGMENTS:
        order = np.argsort(-scores, kind="stable")
        caught_bad = np.cumsum(bad[order])  # bad rollouts among the i + 1 highest scores
        precision = caught_bad / np.arange(1, len(scores) + 1)
        recall = caught_bad / bad.sum()
        f2 = 5 * precision * recall / np.maximum(4 * precision + recall, 1e-12)
        # Cutting the i + 1 highest scores: a threshold just below the (i + 1)-th, and above the next one.
        best = int(np.argmax(f2))
        upper = scores[order[best]]
        lower = scores[order[best + 1]] if best + 1 < len(scores) else 0.0
        threshold, method = float((upper + lower) / 2 if lower < upper else np.nextafter(upper, 0.0)), "held-out"
    else:
        threshold, method = tolerance / growth, "extrapolated"
    precision, recall = precision_recall(scores, errors, threshold, tolerance)
    return CutoffCalibration(
        threshold, float(tolerance), int(horizon), method, len(scores), int(bad.sum()), precision, recall,
        spearman(scores, errors), growth,
    )  # fmt: skip
