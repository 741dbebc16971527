"""``dream-envs``: the command line. ``bench`` compares model-free and model-based runs side by side; ``report``
re-draws the tables and plots of a results folder; ``diagnose`` measures a dream model's compounding error and
the calibration of its disagreement.

    dream-envs bench                                     # the default CartPole-v1 comparison, into results/
    dream-envs bench --env Pendulum-v1 --algos sac sac+dyna --seeds 5 --n-jobs 2 --out results/
    dream-envs bench --tensorboard-log tb/                # then: tensorboard --logdir tb/ (one run folder per run)
    dream-envs report results/ --no-log-x
    dream-envs diagnose --model Dream-CartPole-v0 --out diagnostics/
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym

from sb3_plugins.benchmark.backends import BACKENDS, RunFailed, execute
from sb3_plugins.benchmark.hyperparams import load_overrides
from sb3_plugins.benchmark.plan import QUICK, plan_runs
from sb3_plugins.benchmark.report import format_speedup, format_steps, summarize, write_report
from sb3_plugins.benchmark.results import ResultsDir, check_writable_folder
from sb3_plugins.benchmark.resume import check_checkpoints, remove_checkpoint
from sb3_plugins.dream_training import ALGOS

__all__ = ["main"]

# The module docstring's first paragraph, without its reST markup: what --help prints.
_DESCRIPTION = " ".join(__doc__.split("\n\n")[0].split()).replace("``", "")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dream-envs", description=_DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{bench,report,diagnose}")
    bench = commands.add_parser("bench", help="model-free vs model-based runs side by side: real steps to threshold",
                                description="Train stock SB3 agents and the same agents + DynaCallback on a real env; "
                                "report real steps to threshold (first pass) and to 'solved and stays solved' (3 "
                                "passing checks in a row), tables and plots.")  # fmt: skip
    bench.add_argument("--env", default="CartPole-v1", help="any registered gymnasium id (default CartPole-v1), or "
                       "'your_module:YourEnv-v0' to import the module that registers it first")  # fmt: skip
    bench.add_argument("--algos", nargs="+", help="e.g. ppo ppo+dyna dqn dqn+dyna, and dream-envs' own muzero, "
                       "world-models and mpc (MPCAgent(env), PETS) (default: ppo ppo+dyna for Discrete actions, "
                       "sac sac+dyna for Box)")  # fmt: skip
    bench.add_argument("--seeds", type=int, help=f"seeds 0..N-1 (default 5; --quick {QUICK['seeds']})")
    bench.add_argument("--budget", type=int, help="real steps per run (default: per env, lower for +dyna, 20,000 for "
                       "muzero and world-models, 1,000-3,000 for mpc)")  # fmt: skip
    bench.add_argument("--threshold", type=float, help="mean return that counts as solved (default: the env "
                       "spec's reward_threshold, or a known one such as Pendulum-v1's -200)")  # fmt: skip
    bench.add_argument("--eval-every", type=int, help="real steps between checks (default: per env; "
                       "1,000 for muzero and world-models, 200 for mpc)")  # fmt: skip
    bench.add_argument("--eval-episodes", type=int, help="deterministic real episodes per check (default 10)")
    bench.add_argument("--n-jobs", type=int, default=_cores(), help="runs at once (default: the CPU cores); a run "
                       "that fails is reported at the end, after the others ran")  # fmt: skip
    bench.add_argument("--backend", choices=BACKENDS, default="local", help="local process pool, or Ray tasks")
    bench.add_argument("--ray-address", help="an existing Ray cluster (default: start a local one)")
    bench.add_argument("--out", default="results", help="results folder (default results/); finished runs in it "
                       "are skipped and part-done ones go on (SB3 agents and their +dyna variants; muzero, "
                       "world-models and mpc start over), so an interrupted benchmark resumes")  # fmt: skip
    bench.add_argument("--hyperparams", help="YAML file of hyperparameter overrides (env -> algo -> n_envs/agent/dyna)")
    bench.add_argument("--quick", action="store_true", help="a preview that finishes in a few minutes on 2 cores")
    bench.add_argument("--device", default="auto", help="auto, cpu or cuda")
    bench.add_argument("--keep-training", action="store_true", help="train through the whole budget instead of "
                       "stopping once a run is solved and stays solved (full curves)")  # fmt: skip
    bench.add_argument("--log-x", action=argparse.BooleanOptionalAction, default=True, help="log-scaled real-step "
                       "axis in curves.png (default; --no-log-x for a linear one)")  # fmt: skip
    bench.add_argument("--no-progress", action="store_true", help="no live progress display")
    bench.add_argument("--checkpoint-minutes", type=float, default=10.0, metavar="M", help="a run's training minutes "
                       "between checkpoints of its state in OUT/checkpoints/, from which the same command goes on "
                       "with a run that stopped part-way (default 10; 0: none written, an existing one still "
                       "used; SB3 agents and their +dyna variants only)")  # fmt: skip
    bench.add_argument("--tensorboard-log", metavar="DIR", help="TensorBoard logs of every agent, one run folder per "
                       "run: DIR/<env>_<algo>_seed<seed>_1 (needs the tensorboard package); not part of a run's "
                       "settings, so a benchmark resumes with or without it")  # fmt: skip
    report = commands.add_parser("report", help="re-draw summary.csv, summary.md and curves.png from saved results")
    report.add_argument("results_dir")
    report.add_argument("--log-x", action=argparse.BooleanOptionalAction, default=True, help="log-scaled "
                        "real-step axis in curves.png (default; --no-log-x for a linear one)")  # fmt: skip
    diagnose = commands.add_parser("diagnose", help="compounding error and calibration of dream models",
                                   description="Roll each model along held-out real segments: error after k steps "
                                   "(single elite, elite mean, TS-1) and how well its disagreement ranks the true "
                                   "error (Spearman, reliability, the cutoff's precision/recall).")  # fmt: skip
    diagnose.add_argument("--model", nargs="+", required=True, help="registered dream ids (Dream-CartPole-v0, ...) "
                          "or model files")  # fmt: skip
    diagnose.add_argument("--env", help="the real env of a model file that does not name it (or module:EnvId for "
                          "the env a file names, registered by that module)")  # fmt: skip
    diagnose.add_argument("--out", default="diagnostics", help="output folder (default diagnostics/)")
    diagnose.add_argument("--horizons", nargs="+", type=int, default=None,
                          help="k values of the table (default 1 5 10 20, those within --max-horizon)")  # fmt: skip
    diagnose.add_argument("--max-horizon", type=int, default=50, help="longest rollout of the curve (default 50)")
    diagnose.add_argument("--segments", type=int, default=200, help="held-out real segments (default 200)")
    diagnose.add_argument("--calibration-horizon", type=int, default=None,
                          help="k of the k-step calibration (default: each model's own calibration horizon, "
                               "model.uncertainty_window, 10 unless fitted otherwise)")  # fmt: skip
    diagnose.add_argument("--tolerance", type=float, help="k-step error (real stds) that counts as bad (default: "
                          "the one the model's cutoff was calibrated for, 0.1)")  # fmt: skip
    diagnose.add_argument("--threshold", type=float, help="cutoff threshold (default: the model's 'auto' one)")
    diagnose.add_argument("--policy", nargs="+", default=["random"], help="SB3 agent .zip files whose trajectories "
                          "are measured beside random actions: one for all models or one per --model ('random' "
                          "for none)")  # fmt: skip
    diagnose.add_argument("--policy-algo", nargs="+", default=["ppo"], help="the SB3 algorithm of each --policy "
                          "(default ppo)")  # fmt: skip
    diagnose.add_argument("--seed", type=int, default=0)
    diagnose.add_argument("--device", default="auto", help="auto, cpu or cuda")
    return parser


def _require_bench_extra(command: str) -> None:
    """The summary needs rliable (the ``bench`` extra): say so before any run starts, not after hours of training."""
    try:
        import rliable  # noqa: F401
    except ImportError as error:
        raise ValueError(
            f"{command} summarises runs with rliable, which is not installed ({error}); install the bench extra: "
            'pip install "dream-envs[bench]" (or bash scripts/install.sh bench)'
        ) from None


def _bench(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from rich.console import Console

    _require_bench_extra("dream-envs bench")
    console = Console(stderr=False)
    if args.n_jobs < 1:
        raise ValueError(f"--n-jobs must be a positive integer, got {args.n_jobs}")
    if args.ray_address and args.backend != "ray":
        raise ValueError(f"--ray-address {args.ray_address!r} needs --backend ray")
    if not (math.isfinite(args.checkpoint_minutes) and args.checkpoint_minutes >= 0):
        raise ValueError(f"--checkpoint-minutes must be a number of minutes >= 0 (0: no checkpoints), got "
                         f"{args.checkpoint_minutes}")  # fmt: skip
    overrides = load_overrides(args.hyperparams) if args.hyperparams else None
    results = ResultsDir(args.out)
    specs = plan_runs(args.env, args.algos, args.seeds, args.budget, args.threshold, args.eval_every,
                      args.eval_episodes, args.device, overrides, args.quick, not args.keep_training,
                      args.tensorboard_log)  # fmt: skip
    # 0 writes no checkpoint; a part-done run's existing one is still where the run goes on from
    seconds = 60 * args.checkpoint_minutes if args.checkpoint_minutes > 0 else math.inf
    specs = [replace(s, checkpoint_dir=str(results.path), checkpoint_seconds=seconds) for s in specs]
    todo = results.pending(specs)
    resuming = check_checkpoints(results.path, todo)
    pending = {s.key for s in todo}
    for spec in specs:
        if spec.key not in pending:  # recorded, but stopped before its checkpoint was removed
            remove_checkpoint(results.path, spec)
    results.check_writable()  # every value is checked: the last thing to know before hours of training
    command = shlex.join(["dream-envs", *argv])
    at_once = min(args.n_jobs, max(len(todo), 1))
    console.print(f"dream-envs bench: {len(specs)} runs on {args.env} ({len(specs) - len(todo)} already in "
                  f"{results.file}), {at_once} at a time, backend {args.backend}")  # fmt: skip
    for (_, algo, seed), steps in resuming.items():
        console.print(f"  {algo} seed {seed} goes on from its checkpoint at {steps:,} real steps")
    runs = {s.key: s for s in todo}
    display = _Display(todo, enabled=not args.no_progress, console=console)

    def on_record(record: dict[str, Any]) -> None:
        record["command"] = command
        results.add(record)
        remove_checkpoint(results.path, runs[(record["env"], record["algo"], record["seed"])])
        display.finished(record)

    status, message = 0, None
    try:
        with display:
            execute(todo, on_record, display.advance, n_jobs=args.n_jobs, backend=args.backend,
                    ray_address=args.ray_address)  # fmt: skip
    except KeyboardInterrupt:
        status = 130
        message = (
            "interrupted: the finished runs are kept; the same command resumes (part-done runs of SB3 agents "
            "from their checkpoints; muzero, world-models and mpc runs start over)"
        )
    except RunFailed as error:
        status, message = 1, str(error)
    if results.records():
        rows = summarize(results.records())
        paths = write_report(results.path, results.records(), log_x=args.log_x, rows=rows)
        _print_summary(console, rows, args.env)
        console.print("wrote " + ", ".join(str(p) for p in [results.file, *paths.values()]))
    if message:
        print(f"dream-envs bench: {message}", file=sys.stderr)
    return status


class _Display:
    """Live progress over runs and real steps (rich), and one line per finished run."""

    def __init__(self, specs: list, enabled: bool, console: Any):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, disable=not enabled)  # fmt: skip
        self.budgets = {s.key: s.budget for s in specs}
        self.done: dict[tuple, int] = {}
        self.runs = self.progress.add_task("runs", total=len(specs))
        self.steps = self.progress.add_task("real steps", total=sum(self.budgets.values()))

    def __enter__(self) -> _Display:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def advance(self, key: tuple, steps: int) -> None:
        steps = min(steps, self.budgets[key])
        self.progress.advance(self.steps, steps - self.done.get(key, 0))
        self.done[key] = steps

    def finished(self, record: dict[str, Any]) -> None:
        key = (record["env"], record["algo"], record["seed"])
        self.advance(key, self.budgets[key])  # a run that solved early gives back the rest of its budget
        self.progress.advance(self.runs)
        hit, stayed = record["real_steps_to_threshold"], record["real_steps_to_stay_solved"]
        if hit is None:
            outcome = f"not solved in {record['budget']:,}"
        elif stayed is not None:
            outcome = f"solved at {hit:,} real steps, stays solved from {stayed:,}"
        else:
            outcome = f"solved at {hit:,} real steps, did not stay solved within {record['budget']:,}"
        self.progress.console.print(f"{record['algo']:>10} seed {record['seed']}: {outcome} "
                                    f"({record['wall_seconds']:.0f} s)")  # fmt: skip


def _print_summary(console: Any, rows: list[dict[str, Any]], env_id: str | None = None) -> None:
    """Per env, one line per algo for the first pass and one for "stays solved" (summary.md adds the median's
    interval, the best run, final return, wall time and imagined steps)."""
    from rich import box
    from rich.table import Table

    for env in sorted({r["env"] for r in rows if env_id is None or r["env"] == env_id}):
        table = Table(title=f"{env}: real steps to threshold", box=box.SIMPLE_HEAD, pad_edge=False,
                      caption="per algo: the first pass, then └ stays: the first of 3 passing checks in a row; > N: "
                      "a lower bound (an unsolved run counts as its budget); n/a: runs recorded before the "
                      "stays-solved metric")  # fmt: skip
        for column in ("algo", "solved", "median", "IQM [95% CI]", "worst", "speed-up"):
            table.add_column(column, justify="left" if column == "algo" else "right", overflow="fold")
        for row in (r for r in rows if r["env"] == env):
            for prefix in ("", "stay_"):
                steps = partial(format_steps, row)
                solved = row[f"{prefix}solved"]
                iqm = f"{prefix}iqm_real_steps"
                interval = f"{steps(iqm)} [{steps(iqm + '_ci_low')}–{steps(iqm + '_ci_high')}]"
                table.add_row("└ stays" if prefix else row["algo"],
                              "n/a" if solved is None else f"{solved}/{row['runs']}",
                              steps(f"{prefix}median_real_steps"), "n/a" if solved is None else interval,
                              steps(f"{prefix}max_real_steps"), format_speedup(row, prefix))  # fmt: skip
        console.print(table)


def _report(args: argparse.Namespace) -> int:
    from rich.console import Console

    _require_bench_extra("dream-envs report")
    results = ResultsDir(args.results_dir, must_exist=True)
    if not results.records():
        raise ValueError(f"{results.file} holds no finished run yet")
    rows = summarize(results.records())
    paths = write_report(results.path, results.records(), log_x=args.log_x, rows=rows)
    console = Console()
    _print_summary(console, rows)
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _diagnose(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from rich.console import Console

    from sb3_plugins.diagnose import (
        _number,
        checked_horizons,
        diagnose_model,
        dream_mode,
        load_diagnosed_model,
        write_diagnostics_page,
    )

    if args.segments < 1:
        raise ValueError(f"--segments must be a positive integer, got {args.segments}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0 (gymnasium seeds), got {args.seed}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out!r} is a file; expected a folder for the diagnostics")
    for name in ("max_horizon", "calibration_horizon"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} (k) must be >= 1, got {getattr(args, name)}")
    if args.horizons is None:  # the defaults a shorter --max-horizon leaves
        args.horizons = [k for k in (1, 5, 10, 20) if k <= args.max_horizon]  # max_horizon >= 1: never empty
    if min(args.horizons) < 1:
        raise ValueError(f"--horizons (k) must be >= 1, got {args.horizons}")
    checked_horizons(args.horizons, args.max_horizon)  # diagnose_model checks them too, but after --out is made
    if args.tolerance is not None and not 0 < args.tolerance < math.inf:
        raise ValueError(f"--tolerance must be a finite number > 0 (real standard deviations), got {args.tolerance}")
    if args.threshold is not None and not 0 <= args.threshold < math.inf:
        raise ValueError(f"--threshold must be a finite number >= 0 (a disagreement), got {args.threshold}")
    models = [load_diagnosed_model(model, args.env, args.device) for model in args.model]  # all checked first
    env_ids = [env_id for _, env_id in models]
    # Several models of one env get their own files and sections: <env>_<n>, numbered in --model order.
    labels = [f"{env_id}_{env_ids[: i + 1].count(env_id)}" if env_ids.count(env_id) > 1 else env_id
              for i, env_id in enumerate(env_ids)]  # fmt: skip
    horizons = [args.calibration_horizon or model.uncertainty_window for model, _ in models]
    for (_, env_id), horizon in zip(models, horizons):
        if args.segments * horizon < 100:
            raise ValueError(f"--segments {args.segments} x calibration horizon {horizon} ({env_id}) = "
                             f"{args.segments * horizon} held-out pairs; at least 100 are needed for rank "
                             "correlations (raise --segments)")  # fmt: skip
    for (_, env_id), horizon in zip(models, horizons):
        # a rollout of k real steps needs an episode of k + 1 observations: longer than the time limit, none exists
        limit = gym.spec(env_id).max_episode_steps if env_id in gym.registry else None
        longest = max([*args.horizons, horizon, args.max_horizon or 0])
        if limit is not None and longest > limit:
            raise ValueError(f"a horizon of {longest} model steps is longer than {env_id}'s episodes (at most {limit} "
                             "steps): no real trajectory is that long; lower --horizons, --max-horizon or "
                             "--calibration-horizon")  # fmt: skip
    policies = _diagnose_policies(args.policy, args.policy_algo, models)
    check_writable_folder(args.out, "--out")  # after every other check: a refused command leaves no folder
    console = Console()
    summaries = []
    for (model, env_id), name, policy, horizon, label in zip(models, args.model, policies, horizons, labels):
        summary = diagnose_model(
            model, env_id, args.out, args.horizons, args.max_horizon, args.segments, horizon,
            args.tolerance, args.threshold, policy, args.seed, uncertainty_mode=dream_mode(name), label=label,
        )  # fmt: skip
        for trajectories, c in summary["calibration"].items():
            console.print(f"{label} ({name}, {trajectories}): one-step Spearman {_number(c['one_step_spearman'])}, "
                          f"{c['horizon']}-step Spearman {_number(c['k_step_spearman'])}, cutoff precision "
                          f"{_number(c['cutoff_precision'])} / recall {_number(c['cutoff_recall'])}")  # fmt: skip
        summaries.append(summary)
    page = Path(args.out) / "diagnostics.md"
    write_diagnostics_page(summaries, page, shlex.join(["dream-envs", *argv]))
    console.print(f"wrote {page} and its plots")
    return 0


def _diagnose_policies(files: list[str], algos: list[str], models: list[tuple[Any, str]]) -> list[Any]:
    """One ``obs -> action`` (or ``None`` for 'random') per model; every file, algorithm and pair of spaces is
    checked before any work."""
    from dream_envs.spaces import spaces_equal

    if len(files) not in (1, len(models)):
        raise ValueError(f"--policy takes one file for all models or one per --model ({len(models)}), got {len(files)}")
    if len(algos) not in (1, len(files)):
        raise ValueError(f"--policy-algo takes one algorithm for all policies or one per --policy, got {len(algos)}")
    for algo in algos:  # a typo is named even where the policy it goes with is 'random'
        if algo not in ALGOS:
            raise ValueError(f"--policy-algo must be one of {sorted(ALGOS)}, got {algo!r}")
    algos = algos * (len(files) // len(algos))
    files, algos = files * (len(models) // len(files)), algos * (len(models) // len(algos))
    for file in files:
        if file == "random":
            continue
        if not Path(file).is_file():
            raise ValueError(f"--policy {file!r}: no such SB3 agent file (or use 'random')")
        _check_sb3_file(file)
    policies = []
    for file, algo, (model, env_id) in zip(files, algos, models):
        if file == "random":
            policies.append(None)
            continue
        try:
            agent = ALGOS[algo].load(file, device="cpu")
        except Exception as error:  # SB3 fails in many ways on a file of another algorithm
            raise ValueError(
                f"--policy {file!r} could not be loaded as a {algo.upper()} agent ({type(error).__name__}: {error}); "
                "was it saved by another algorithm? Give its --policy-algo"
            ) from error
        for what, mine, theirs in (("observation", model.observation_space, agent.observation_space),
                                   ("action", model.action_space, agent.action_space)):  # fmt: skip
            if not spaces_equal(mine, theirs):
                raise ValueError(f"--policy {file!r} acts on {what} space {theirs}, but the model of {env_id} has "
                                 f"{mine}")  # fmt: skip
        policies.append(lambda obs, agent=agent: agent.predict(obs, deterministic=True)[0])
    return policies


def _check_sb3_file(file: str) -> None:
    """Refuse a file that is not an SB3 ``model.save`` archive before SB3 tries it (its errors then read as if the
    file were of another algorithm)."""
    import zipfile

    try:
        with zipfile.ZipFile(file) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"--policy {file!r} is not an SB3 agent file: not a zip archive as model.save() writes "
                         f"({error}); is it truncated, or another kind of file?") from None  # fmt: skip
    if not {"data", "policy.pth"} <= names:
        raise ValueError(f"--policy {file!r} is a zip archive without SB3's 'data' and 'policy.pth' entries: not a "
                         f"file written by an SB3 agent's save() (it holds {sorted(names)[:5]})")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dream-envs`` console script; returns the exit status (2 for bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "" not in sys.path and os.getcwd() not in sys.path:
        # as `python -m sb3_plugins` does: `--env my_module:MyEnv-v0` from the user's project folder finds my_module
        sys.path.insert(0, os.getcwd())
    args = _parser().parse_args(argv)
    try:
        if args.command == "diagnose":
            return _diagnose(args, argv)
        return _bench(args, argv) if args.command == "bench" else _report(args)
    except ValueError as error:
        print(f"dream-envs {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
