"""The benchmark: stock SB3 agents vs the same agents + DynaCallback, real steps to threshold (and to "solved and
stays solved"), side by side.

The ``dream-envs bench`` command line (:mod:`sb3_plugins.cli`) is built from these pieces: a plan of
resolved runs (:func:`plan_runs`), one run (:func:`run_one`), backends that execute runs in this process, a
process pool or Ray (:func:`execute`), the results folder (:class:`ResultsDir`), the figures over seeds
(:func:`steps_to_stay_solved`, :func:`step_statistics`) and the report (:func:`write_report`).
"""

from sb3_plugins.benchmark.backends import BACKENDS, RunFailed, execute
from sb3_plugins.benchmark.hyperparams import ENV_DEFAULTS, env_defaults, hyperparams_for, load_overrides, parse_algo
from sb3_plugins.benchmark.metrics import step_statistics, steps_to_stay_solved
from sb3_plugins.benchmark.plan import QUICK, default_algos, plan_runs
from sb3_plugins.benchmark.report import summarize, write_report
from sb3_plugins.benchmark.results import ResultsDir
from sb3_plugins.benchmark.runner import RECORD_FORMAT, STAY, RunSpec, run_one

__all__ = [
    "BACKENDS",
    "ENV_DEFAULTS",
    "QUICK",
    "RECORD_FORMAT",
    "ResultsDir",
    "RunFailed",
    "RunSpec",
    "STAY",
    "default_algos",
    "env_defaults",
    "execute",
    "hyperparams_for",
    "load_overrides",
    "parse_algo",
    "plan_runs",
    "run_one",
    "step_statistics",
    "steps_to_stay_solved",
    "summarize",
    "write_report",
]
