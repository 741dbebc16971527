"""How far DynaCallback leans on its model: a trust in [0, 1] from the fit's holdout error, and what it scales.

A model that cannot predict its own held-out real transitions teaches the agent the model's mistakes: with full
trust, SAC on a model whose learned reward was poor scored -334 to -239 over its first 5,000 real steps where the
stock agent scored -47 to -55 (issue 14). So every refit measures the elite mean's holdout error (1 - R^2 of each
observation dim's change, :attr:`~dream_envs.FitResult.holdout_error_per_output`, and the reward's,
:attr:`~dream_envs.FitResult.reward_error`), takes the worse of the observation dims' mean and the reward's, and
maps it linearly from full trust (error <= :data:`TRUSTED_ERROR`) to none (>= :data:`UNTRUSTED_ERROR`).
The reward is judged on non-terminal transitions: Acrobot's reward is -1 except on the terminal step, so its
1 - R^2 over all rows is near 1 for a model that is right wherever the episode goes on. The trust then scales the
imagined share of the agent's updates: the imagined fraction of off-policy batches and the gradient steps beyond
the agent's own, the number of on-policy dream rounds. With no trust the agent trains as the stock agent would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dream_envs.checks import is_number

__all__ = ["ModelTrust", "TRUSTED_ERROR", "UNTRUSTED_ERROR", "model_trust", "valid_trust_bounds"]

TRUSTED_ERROR = 0.1  # holdout 1 - R^2 at or below which the model is fully trusted
UNTRUSTED_ERROR = 0.5  # ... at or above which it is not used at all


@dataclass(frozen=True)
class ModelTrust:
    """One refit's verdict.

    :param trust: in [0, 1]; 1 uses the dream as configured, 0 not at all
    :param obs_error: mean over observation dims of the holdout 1 - R^2 of the predicted change
    :param reward_error: holdout 1 - R^2 of the predicted reward (0 for a known or constant reward)
    :param reason: one line saying what decided it

    Example::

        from sb3_plugins.model_trust import model_trust

        print(model_trust([0.01, 0.02], reward_error=0.6).reason)  # the reward is the problem: trust 0
    """

    trust: float
    obs_error: float
    reward_error: float
    reason: str


def valid_trust_bounds(trusted: object, untrusted: object) -> bool:
    """Whether ``(trusted, untrusted)`` are finite numbers with ``0 <= trusted < untrusted``."""
    return is_number(trusted) and is_number(untrusted) and 0 <= trusted < untrusted < math.inf


def model_trust(
    obs_errors: Sequence[float], reward_error: float, reward_learned: bool = True, trusted: float = TRUSTED_ERROR,
    untrusted: float = UNTRUSTED_ERROR,
) -> ModelTrust:  # fmt: skip
    """The trust of a model whose holdout errors are given.

    :param obs_errors: ``(obs_dim,)`` holdout 1 - R^2 of each observation dim's predicted change; empty when
        nothing was held out (full trust: there is nothing to judge by)
    :param reward_error: holdout error of the reward on non-terminal rows (:attr:`~dream_envs.FitResult.reward_error`;
        NaN, no such row held out, leaves the reward unjudged)
    :param reward_learned: whether the dream uses the model's reward (a known reward function ignores its error)
    :param trusted: error at or below which the trust is 1
    :param untrusted: error at or above which the trust is 0
    :return: a :class:`ModelTrust`
    :raises ValueError: ``trusted >= untrusted``, a bound that is not a finite number >= 0, errors that are not numbers
    """
    if not valid_trust_bounds(trusted, untrusted):
        raise ValueError(f"need finite numbers 0 <= trusted < untrusted, got trusted={trusted!r}, "
                         f"untrusted={untrusted!r}")  # fmt: skip
    if not is_number(reward_error):
        raise ValueError(f"reward_error must be a number (NaN: no non-terminal row held out), got {reward_error!r}")
    if isinstance(obs_errors, (str, bytes)) or not hasattr(obs_errors, "__len__"):
        raise ValueError(f"obs_errors must be a sequence of numbers, got {obs_errors!r}")
    errors = np.asarray(obs_errors, dtype=float)
    if errors.size == 0:
        return ModelTrust(1.0, float("nan"), float("nan"), "no holdout to judge the model by: used as configured")
    reward_error = float(reward_error) if reward_learned else 0.0
    if math.isnan(reward_error):  # no non-terminal row held out: the reward cannot be judged, the dynamics can
        reward_error = 0.0
    if not (np.isfinite(errors).all() and math.isfinite(reward_error)):  # the fit diverged
        return ModelTrust(0.0, float("nan"), float("nan"), "the model's holdout error is not finite: not used")
    obs_error = float(errors.mean())
    worst, what = (obs_error, "observation") if obs_error >= reward_error else (reward_error, "reward")
    trust = float(np.clip((untrusted - worst) / (untrusted - trusted), 0.0, 1.0))
    if trust == 1.0:
        reason = f"holdout errors (1 - R^2) obs {obs_error:.3f}, reward {reward_error:.3f} <= {trusted}: full trust"
    else:
        reason = (f"the {what} holdout error (1 - R^2) is {worst:.3f} (trusted <= {trusted}, unused >= "
                  f"{untrusted}): trust {trust:.2f}, leaning on real data")  # fmt: skip
    return ModelTrust(trust, obs_error, reward_error, reason)
