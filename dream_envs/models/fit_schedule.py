"""How long a fit runs when it is not told: batch size, gradient-step budget and patience from the data size.

A fixed epoch count is wrong at both ends of a Dyna run: 50 epochs of 256-row batches on the first 250 real steps
are 50 gradient steps (the model barely moves off its initialisation), while on 100,000 rows they are 20,000. So the
fit is sized in gradient steps: batches small enough that an epoch holds at least :data:`MIN_BATCHES_PER_EPOCH` of
them, a budget of gradient steps (smaller when the model continues from earlier weights: a Dyna refit adds a few
hundred rows to data the model already fits), and a patience of :data:`PATIENCE_STEPS` gradient steps without a
holdout improvement. Chosen by measurement on five envs (``benchmarks/fit_budget.py``, docs/fit_budget.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dream_envs.checks import check_int

__all__ = ["FitSchedule", "fit_schedule"]

MIN_BATCH, MAX_BATCH = 32, 256
MIN_BATCHES_PER_EPOCH = 16
COLD_STEPS = 4_000  # gradient steps of a fit from freshly initialised weights
WARM_STEPS = 1_000  # gradient steps of a fit that continues from fitted weights
PATIENCE_STEPS = 300  # gradient steps without a 1% holdout improvement before stopping
MIN_EPOCHS = 5


@dataclass(frozen=True)
class FitSchedule:
    """The resolved length of one fit.

    :param batch_size: rows per member per gradient step
    :param max_epochs: upper bound on passes over the training split
    :param patience: epochs without a holdout improvement before stopping
    :param max_gradient_steps: ``max_epochs`` times the batches of one epoch

    Example::

        from dream_envs.models import fit_schedule

        print(fit_schedule(225, warm=False))  # 32-row batches, 8 per epoch, up to 500 epochs
        print(fit_schedule(90_000, warm=True))  # 256-row batches, 5 epochs (the floor: 1,760 gradient steps)
    """

    batch_size: int
    max_epochs: int
    patience: int
    max_gradient_steps: int


def fit_schedule(
    n_train: int,
    warm: bool,
    cold_steps: int = COLD_STEPS,
    warm_steps: int = WARM_STEPS,
    patience_steps: int = PATIENCE_STEPS,
    batch_size: int | None = None,
) -> FitSchedule:
    """The batch size, epoch cap and patience of a fit on ``n_train`` training rows.

    ``batch_size = clip(n_train // 16, 32, 256)``; the epoch cap gives ``cold_steps`` gradient steps (``warm_steps``
    when the model continues from fitted weights), at least 5 epochs; patience covers ``patience_steps`` gradient
    steps, at least 5 epochs.

    :param n_train: rows in the training split (>= 1)
    :param warm: whether the model starts from fitted weights
    :param cold_steps: gradient-step budget of a fit from initialised weights
    :param warm_steps: gradient-step budget of a refit
    :param patience_steps: gradient steps without improvement before early stopping
    :param batch_size: a batch size the caller fixed (``None``: the rule above); the epochs are sized for it
    :return: a :class:`FitSchedule`
    :raises ValueError: a count that is not a positive integer, or ``warm`` not a bool (named)
    """
    if not isinstance(warm, (bool, np.bool_)):
        raise ValueError(f"warm must be True or False, got {warm!r}")
    for name, value in (("n_train", n_train), ("cold_steps", cold_steps), ("warm_steps", warm_steps),
                        ("patience_steps", patience_steps)):  # fmt: skip
        check_int(name, value)
    if batch_size is None:
        batch = min(MAX_BATCH, max(MIN_BATCH, n_train // MIN_BATCHES_PER_EPOCH))
    else:
        batch = check_int("batch_size", batch_size)
    per_epoch = math.ceil(n_train / batch)
    budget = warm_steps if warm else cold_steps
    max_epochs = max(MIN_EPOCHS, math.ceil(budget / per_epoch))
    patience = max(MIN_EPOCHS, math.ceil(patience_steps / per_epoch))
    return FitSchedule(batch, max_epochs, patience, max_epochs * per_epoch)
