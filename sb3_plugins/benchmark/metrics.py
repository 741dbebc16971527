"""The benchmark's figures over seeds: real steps to threshold and to "solved and stays solved", their median, worst
and interquartile mean (IQM) with 95% bootstrap confidence intervals (rliable).

A run that never solved within its budget enters every statistic as its budget: a lower bound of what it would
have needed. :func:`step_statistics` says which figures that lower bound reaches, so that a table can mark them
``>``; a figure it does not reach (an IQM that trims the unsolved runs away, say) is exact.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import numpy as np

from dream_envs.checks import check_int
from sb3_plugins.benchmark.runner import STAY
from sb3_plugins.evaluation import first_streak

__all__ = ["BOOTSTRAP_REPS", "random_return", "step_statistics", "steps_to_stay_solved"]

# Bootstrap resamples per confidence interval. With 5 seeds there are only 126 distinct resamples, so 2,000 pin the
# percentiles down; rliable's default of 50,000 would make a report take minutes on 2 cores.
BOOTSTRAP_REPS = 2_000
# Where an unsolved run is put to find which figures depend on it: far past any budget.
_BEYOND = 1e15


def steps_to_stay_solved(record: dict[str, Any], stay: int = STAY) -> float:
    """A run's real steps to "solved and stays solved": those of the first check that starts ``stay + 1`` passing
    checks in a row. ``inf`` if no such streak ended within its budget, ``nan`` if the record cannot tell.

    Records written since the metric exist hold it (``real_steps_to_stay_solved``). A record from before is judged
    from its curve: a streak in the curve counts; a run that never passed, or trained its whole budget
    (``--keep-training``) without a streak, never stayed solved; a run that stopped at its first pass was never
    checked again, so it cannot claim to have stayed solved, nor be said not to have: ``nan``.

    :param record: one record of ``results.jsonl``
    :param stay: passing checks after the first that a streak needs (for records from before the metric)

    Example::

        from sb3_plugins.benchmark import steps_to_stay_solved

        curve = [[250, 480.0], [500, 90.0], [750, 476.0], [1000, 500.0], [1250, 490.0]]
        record = {"curve": curve, "threshold": 475.0, "real_steps_to_threshold": 250, "stop_at_threshold": False}
        assert steps_to_stay_solved(record) == 750
    """
    if "real_steps_to_stay_solved" in record:
        steps = record["real_steps_to_stay_solved"]
        return math.inf if steps is None else float(steps)
    if record["threshold"] is None:  # curves only: nothing is ever solved
        return math.inf
    start = first_streak(record["curve"], record["threshold"], stay + 1)
    if start is not None:
        return float(start)
    if record["real_steps_to_threshold"] is None or not record.get("stop_at_threshold", True):
        return math.inf
    return math.nan


def step_statistics(steps: np.ndarray, budgets: np.ndarray, seed: int = 0) -> tuple[dict[str, float], set[str]]:
    """Median, interquartile mean, best and worst of real steps over seeds, with 95% bootstrap confidence intervals
    of the median and the IQM, and the names of the figures that are lower bounds.

    The intervals are rliable's (``rliable.library.get_interval_estimates``, percentile method) over the seeds of
    one (env, algo): a stratified bootstrap with one task, so each resample draws the runs with replacement. The
    IQM is ``rliable.metrics.aggregate_iqm`` (the mean of the middle 50% of runs, scipy's ``trim_mean`` cutting
    ``int(n / 4)`` runs off each end); the median is ``np.median`` over runs (rliable's ``aggregate_median`` is the
    median over tasks of each task's mean over runs: with one task, the mean).

    :param steps: ``(n_runs,)`` real steps of each run, ``inf`` where the run never got there
    :param budgets: ``(n_runs,)`` each run's budget, which an unsolved run enters the figures as
    :param seed: seeds the bootstrap's ``RandomState`` (the same records give the same intervals)
    :return: ``{"median", "median_ci_low", "median_ci_high", "iqm", "iqm_ci_low", "iqm_ci_high", "min", "max"}``,
        and the subset of those names whose value an unsolved run reaches (a lower bound: the run needed more)

    Example::

        import numpy as np
        from sb3_plugins.benchmark.metrics import step_statistics

        values, lower_bounds = step_statistics(np.array([500.0, 750, 1000, np.inf]), np.full(4, 5000.0))
        print(values["iqm"], values["iqm_ci_low"], values["iqm_ci_high"], lower_bounds)  # 875.0 ... {'max', ...}
    """
    steps, budgets = np.asarray(steps, dtype=float), np.asarray(budgets, dtype=float)
    unsolved = ~np.isfinite(steps)
    values = _with_intervals(np.where(unsolved, budgets, steps), seed)
    if not unsolved.any():
        return values, set()
    # Every figure is non-decreasing in each run's steps: one that does not move when the unsolved runs go from
    # their budgets to far beyond them does not depend on them.
    beyond = _with_intervals(np.where(unsolved, _BEYOND, steps), seed)
    # (not ==: a trimmed mean of the same runs in another order may differ in its last bit)
    return values, {name for name in values if not np.isclose(beyond[name], values[name], rtol=1e-9, atol=0)}


def _with_intervals(steps: np.ndarray, seed: int) -> dict[str, float]:
    from rliable import library, metrics  # imports pandas and arch: only when a report is written

    def median_and_iqm(scores: np.ndarray) -> np.ndarray:  # scores: (n_runs, 1 task)
        return np.array([np.median(scores), metrics.aggregate_iqm(scores)])

    # rliable 1.2's StratifiedBootstrap draws its resamples from numpy's global generator whatever random_state
    # says, so the global state is seeded for the call and given back as it was: the same records give the same
    # intervals, and no one else's random stream moves.
    global_state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            # arch (rliable pins it below 8) deprecates the RandomState that rliable hands it
            warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)
            points, intervals = library.get_interval_estimates({"runs": steps[:, None]}, median_and_iqm,
                                                               reps=BOOTSTRAP_REPS, confidence_interval_size=0.95,
                                                               random_state=np.random.RandomState(seed))  # fmt: skip
    finally:
        np.random.set_state(global_state)
    (median, iqm), ((median_low, iqm_low), (median_high, iqm_high)) = points["runs"], intervals["runs"]
    return {"median": float(median), "median_ci_low": float(median_low), "median_ci_high": float(median_high),
            "iqm": float(iqm), "iqm_ci_low": float(iqm_low), "iqm_ci_high": float(iqm_high),
            "min": float(steps.min()), "max": float(steps.max())}  # fmt: skip


@functools.cache
def random_return(env_id: str, episodes: int = 20, seed: int = 0) -> float:
    """Mean return of uniformly random actions on ``env_id`` over ``episodes`` episodes (seeded): the floor that
    the do-no-harm margin is measured from (issue 14: a ``+dyna`` row's return at every check >= the stock one's
    minus 10% of the threshold's distance from this).

    Example::

        from sb3_plugins.benchmark.metrics import random_return

        print(random_return("CartPole-v1"))  # about 22
    """
    import gymnasium as gym

    check_int("episodes", episodes)
    env = gym.make(env_id)
    env.action_space.seed(seed)
    total = 0.0
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
    env.close()
    return total / episodes
