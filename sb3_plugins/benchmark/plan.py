"""Turn benchmark options into fully resolved runs, checking every value before any training starts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from dream_envs.checks import check_int
from dream_envs.device import resolve_device
from sb3_plugins.benchmark.hyperparams import (
    default_budget,
    env_defaults,
    hyperparams_for,
    is_own_agent,
    own_eval_every,
    parse_algo,
)
from sb3_plugins.benchmark.runner import RunSpec, build_agent

__all__ = ["QUICK", "default_algos", "plan_runs"]

# --quick: a preview that finishes in a few minutes on 2 cores (fewer seeds and episodes, a third of the budget).
QUICK = {"seeds": 2, "eval_episodes": 5, "budget_scale": 1 / 3}


def default_algos(action_space: spaces.Space) -> list[str]:
    """One stock agent and its +dyna variant: PPO for Discrete actions, SAC for Box (the default comparison
    finishes in minutes on 2 cores; add ``dqn dqn+dyna``, ``td3 td3+dyna``, ... with ``--algos``)."""
    return ["ppo", "ppo+dyna"] if isinstance(action_space, spaces.Discrete) else ["sac", "sac+dyna"]


def plan_runs(
    env_id: str,
    algos: Sequence[str] | None = None,
    seeds: int | None = None,
    budget: int | None = None,
    threshold: float | None = None,
    eval_every: int | None = None,
    eval_episodes: int | None = None,
    device: str = "auto",
    overrides: dict[str, Any] | None = None,
    quick: bool = False,
    stop_at_threshold: bool = True,
    tensorboard_log: str | None = None,
) -> list[RunSpec]:
    """Every (algo, seed) run of one env, resolved and checked: an unknown env or algo, an algo that cannot act
    in the env's action space, bad agent or DynaCallback settings and a budget below the check interval all raise
    a ``ValueError`` naming the value, before anything trains. ``None`` means the env's default (or --quick's).

    :param env_id: any registered gymnasium id
    :param algos: stock SB3 algorithms, their ``+dyna`` variants, and dream-envs' own ``muzero``,
        ``world-models`` and ``mpc`` (``MPCAgent(env)``); default :func:`default_algos`
    :param seeds: number of seeds, 0..seeds-1 (default 5)
    :param budget: real steps per run (default: per env, lower for +dyna, see ``ENV_DEFAULTS``)
    :param threshold: mean return that counts as solved (default: the spec's ``reward_threshold``, else the table's)
    :param eval_every: real steps between checks (default: the env's; 1,000 for MuZero and World Models, whose
        checks cost seconds; 200 for MPC, one check per refit)
    :param eval_episodes: deterministic episodes per check (default 10)
    :param device: the agents' device
    :param overrides: parsed YAML hyperparameter overrides
    :param quick: the preview profile :data:`QUICK`
    :param stop_at_threshold: end each run once it is solved and stays solved (see :class:`RunSpec`)
    :param tensorboard_log: a folder for the agents' TensorBoard logs, one run folder per run (``RunSpec.tb_log_name``)
    """
    defaults = env_defaults(env_id)
    resolve_device(device)
    if tensorboard_log is not None:
        tensorboard_log = _check_tensorboard_log(tensorboard_log)
    if algos is None:
        probe = gym.make(env_id)
        algos = default_algos(probe.action_space)
        probe.close()
    if not algos:
        raise ValueError("--algos needs at least one algo, e.g. ppo ppo+dyna")
    for algo in algos:
        parse_algo(algo)
    if len(set(algos)) != len(algos):
        raise ValueError(f"--algos lists an algo twice: {list(algos)}")
    seeds = check_int("--seeds", seeds if seeds is not None else (QUICK["seeds"] if quick else 5))
    eval_episodes = check_int("--eval-episodes", eval_episodes if eval_episodes is not None
                              else (QUICK["eval_episodes"] if quick else 10))  # fmt: skip
    if eval_every is not None:
        check_int("--eval-every", eval_every)
    if threshold is None:
        threshold = defaults["threshold"]
    elif not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
        raise ValueError(f"--threshold must be a finite number, got {threshold!r}")
    specs = []
    for algo in algos:
        own = is_own_agent(algo)
        algo_every = eval_every if eval_every is not None else (own_eval_every(algo) if own else defaults["eval_every"])
        if budget is not None:
            algo_budget = check_int("--budget", budget)
        else:
            algo_budget = default = default_budget(algo, defaults)
            if quick:  # a third of the budget, at least one check, never more than the full default
                scaled = round(algo_budget * QUICK["budget_scale"] / algo_every) * algo_every
                algo_budget = min(default, max(algo_every, scaled))
        if algo_budget < algo_every:
            have = f"--budget {algo_budget}" if budget is not None else f"{algo}'s default budget {algo_budget}"
            every = (f"--eval-every {algo_every}" if eval_every is not None
                     else f"{algo}'s default check interval {algo_every}")  # fmt: skip
            raise ValueError(f"{have} is below {every}: no check of {algo} would run; set --budget or --eval-every")
        params = hyperparams_for(env_id, algo, overrides)
        for seed in range(seeds):
            specs.append(RunSpec(env_id, algo, seed, algo_budget, None if threshold is None else float(threshold),
                                 algo_every, eval_episodes, params, device, stop_at_threshold,
                                 tensorboard_log=tensorboard_log))  # fmt: skip
        build_agent(specs[-1])  # fails now, with the offending value, rather than inside a worker later
    return specs


def _check_tensorboard_log(folder: str) -> str:
    """The folder as a string, or a ``ValueError`` before any run trains: TensorBoard logs need the ``tensorboard``
    package, and a folder that is a file cannot hold them."""
    try:
        import tensorboard  # noqa: F401
    except ImportError as error:
        raise ValueError(f"--tensorboard-log needs the tensorboard package, which is not installed ({error}); "
                         'pip install tensorboard (or pip install "dream-envs[bench]")') from None  # fmt: skip
    if Path(folder).exists() and not Path(folder).is_dir():
        raise ValueError(f"--tensorboard-log {folder!r} is a file; expected a folder for the TensorBoard runs")
    return str(folder)
