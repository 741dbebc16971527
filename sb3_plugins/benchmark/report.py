"""Tables and plots from benchmark records: ``summary.csv``, ``summary.md`` and ``curves.png``."""

from __future__ import annotations

import csv
import io
import math
import textwrap
import warnings
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from dream_envs.io import atomic_write_text, save_figure
from sb3_plugins.benchmark.hyperparams import DYNA_SUFFIX
from sb3_plugins.benchmark.metrics import BOOTSTRAP_REPS, random_return, step_statistics, steps_to_stay_solved
from sb3_plugins.benchmark.runner import STAY

__all__ = ["summarize", "write_report"]

# Per metric ("" for real steps to threshold, "stay_" for real steps to stay solved): runs that got there, figures
# over seeds with unsolved runs at their budget, and the speed-up of a +dyna algo over its stock one.
_FIGURES = ("median", "median_ci_low", "median_ci_high", "iqm", "iqm_ci_low", "iqm_ci_high", "min", "max")
_METRICS = {"": "first pass", "stay_": "stays solved"}


def _column(prefix: str, figure: str) -> str:
    """``("stay_", "iqm_ci_low")`` -> ``"stay_iqm_real_steps_ci_low"``."""
    statistic, _, bound = figure.partition("_ci_")
    return f"{prefix}{statistic}_real_steps" + (f"_ci_{bound}" if bound else "")


_COLUMNS = ("env", "algo", "runs", "solved", "threshold", "budget", *(_column("", f) for f in _FIGURES),
            "speedup_vs_stock", "stay_judged", "stay_solved", *(_column("stay_", f) for f in _FIGURES),
            "stay_speedup_vs_stock", "worst_check_vs_stock", "worst_check_steps", "wall_vs_stock", "lower_bounds",
            "median_final_return", "median_wall_seconds", "median_imagined_steps", "reward_termination")  # fmt: skip


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (env, algo) with two metrics: real steps to threshold (the first passing check) and real steps
    to "solved and stays solved" (``stay_`` columns; the first of 3 passing checks in a row). Per metric: runs that
    got there (``solved``), the median and the IQM with their 95% bootstrap confidence intervals, best and worst
    (``median_real_steps``, ``median_real_steps_ci_low``, ``..._ci_high``, ``iqm_real_steps`` and its interval,
    ``min_real_steps``, ``max_real_steps``; see :func:`~sb3_plugins.benchmark.metrics.step_statistics`), and each
    ``+dyna`` algo's speed-up over its stock algo (median real steps of stock / of +dyna).

    An unsolved run counts as its budget; ``lower_bounds`` names the columns that this makes lower bounds (and a
    speed-up over a stock median that is one). Records from before the stays-solved metric that stopped at their
    first pass cannot say whether they stayed solved: ``stay_judged`` counts the runs that can, and where any
    cannot, the row's ``stay_`` figures are ``None``. Median final return, wall time and imagined steps complete
    the row."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in records:
        groups[(record["env"], record["algo"])].append(record)
    rows = {}
    for (env, algo), runs in sorted(groups.items()):
        finals = [r["final_return"] for r in runs if r["final_return"] is not None]
        budgets = np.array([r["budget"] for r in runs], dtype=float)
        first = np.array([np.inf if r["real_steps_to_threshold"] is None else r["real_steps_to_threshold"]
                          for r in runs], dtype=float)  # fmt: skip
        stay = np.array([steps_to_stay_solved(r) for r in runs])
        row: dict[str, Any] = {
            "env": env, "algo": algo, "runs": len(runs), "threshold": runs[0]["threshold"],
            "budget": max(r["budget"] for r in runs), "stay_judged": int((~np.isnan(stay)).sum()), "lower_bounds": [],
            "median_final_return": float(np.median(finals)) if finals else None,
            "median_wall_seconds": float(np.median([r["wall_seconds"] for r in runs])),
            "median_imagined_steps": float(np.median([r["imagined_steps"] for r in runs])),
            "reward_termination": "/".join(sorted({r["reward_termination"] for r in runs})),
        }  # fmt: skip
        for prefix, steps in (("", first), ("stay_", stay)):
            row[f"{prefix}speedup_vs_stock"] = None
            if np.isnan(steps).any():
                row[f"{prefix}solved"] = None
                row.update({_column(prefix, figure): None for figure in _FIGURES})
                continue
            values, lower = step_statistics(steps, budgets)
            row[f"{prefix}solved"] = int(np.isfinite(steps).sum())
            row.update({_column(prefix, figure): value for figure, value in values.items()})
            row["lower_bounds"] += [_column(prefix, figure) for figure in _FIGURES if figure in lower]
        rows[(env, algo)] = row
    for (env, algo), row in rows.items():
        stock = rows.get((env, algo[: -len(DYNA_SUFFIX)])) if algo.endswith(DYNA_SUFFIX) else None
        row["worst_check_vs_stock"] = row["worst_check_steps"] = row["wall_vs_stock"] = None
        if stock is not None:
            row["wall_vs_stock"] = row["median_wall_seconds"] / max(stock["median_wall_seconds"], 1e-9)
            if row["threshold"] is not None:
                margin = check_margin(groups[(env, algo)], groups[(env, stock["algo"])], row["threshold"],
                                      random_return(env))  # fmt: skip
                if margin is not None:
                    row["worst_check_vs_stock"], row["worst_check_steps"] = margin
        for prefix in _METRICS if stock is not None else ():
            median = f"{prefix}median_real_steps"
            # a +dyna median that is a lower bound makes any speed-up an upper bound of unknown use: none
            if row[median] is None or stock[median] is None or median in row["lower_bounds"]:
                continue
            row[f"{prefix}speedup_vs_stock"] = stock[median] / row[median]
            if median in stock["lower_bounds"]:  # stock did not solve in its budget: it needs more
                row["lower_bounds"].append(f"{prefix}speedup_vs_stock")
    return list(rows.values())


def check_margin(dyna_runs: list[dict[str, Any]], stock_runs: list[dict[str, Any]], threshold: float,
                 random: float) -> tuple[float, float] | None:  # fmt: skip
    """The do-no-harm figure: at each of the ``+dyna`` runs' checks where the stock runs have a value too, the
    median ``+dyna`` return minus the median stock return (each run's last check at or before that step; a run
    that stopped once solved keeps its last value), in units of the threshold's distance from a random policy's
    return. Returns the worst (lowest) of them and its real steps; >= -0.1 meets issue 14's bar. ``None`` when the
    curves share no check, or the threshold is missing or equal to the random return. Curves are in check order,
    as the runner records them."""
    scale = abs(threshold - random) if threshold is not None else math.nan
    if not (dyna_runs and stock_runs and math.isfinite(scale) and scale > 0):
        return None  # nothing to compare, or no distance to measure in
    grid, dyna, _, _ = _median_curve(dyna_runs)
    stock_grid, stock, _, _ = _median_curve(stock_runs)
    if not len(grid) or not len(stock_grid):
        return None
    index = np.searchsorted(stock_grid, grid, side="right") - 1
    shared = (index >= 0) & np.isfinite(dyna)
    shared[shared] &= np.isfinite(stock[index[shared]])
    if not shared.any():
        return None
    margins = (dyna[shared] - stock[index[shared]]) / scale
    worst = int(np.nanargmin(margins))
    return float(margins[worst]), float(grid[shared][worst])


def format_steps(row: dict[str, Any], column: str) -> str:
    """Real steps as a table shows them: ``> N`` where unsolved runs (counted as their budget) make N a lower bound,
    ``n/a`` where the records cannot tell."""
    value = row[column]
    if value is None:
        return "n/a"
    return f"{'> ' if column in row['lower_bounds'] else ''}{value:,.0f}"


def format_figures(row: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """One metric's cells: solved, median and IQM each with its 95% CI, and the range (best – worst)."""
    steps = partial(format_steps, row)
    if row[f"{prefix}solved"] is None:
        judged = f" ({row['stay_judged']}/{row['runs']} runs can tell)" if prefix else ""
        return {"solved": "n/a" + judged, "median": "n/a", "iqm": "n/a", "range": "n/a"}
    figure = partial(_column, prefix)
    return {
        "solved": f"{row[f'{prefix}solved']}/{row['runs']}",
        "median": f"{steps(figure('median'))} ({steps(figure('median_ci_low'))} – {steps(figure('median_ci_high'))})",
        "iqm": f"{steps(figure('iqm'))} ({steps(figure('iqm_ci_low'))} – {steps(figure('iqm_ci_high'))})",
        "range": f"{steps(figure('min'))} – {steps(figure('max'))}",
    }


def format_speedup(row: dict[str, Any], prefix: str = "") -> str:
    column = f"{prefix}speedup_vs_stock"
    if row[column] is None:
        return ""
    return f"{'>= ' if column in row['lower_bounds'] else ''}{row[column]:.1f}x"


def format_ratio(row: dict[str, Any]) -> str:
    return "" if row.get("wall_vs_stock") is None else f"{row['wall_vs_stock']:.1f}x"


def format_margin(row: dict[str, Any]) -> str:
    """``-0.04 at 1,000`` (median +dyna minus median stock return, in units of threshold - random return)."""
    if row.get("worst_check_vs_stock") is None:
        return ""
    return f"{row['worst_check_vs_stock']:+.2f} at {row['worst_check_steps']:,.0f}"


def format_return(row: dict[str, Any]) -> str:
    return "" if row["median_final_return"] is None else f"{row['median_final_return']:.1f}"


def _markdown(rows: list[dict[str, Any]], commands: list[str]) -> str:
    lines = ["# Benchmark: real steps to threshold, model-free vs model-based", ""]
    if commands:
        lines += ["Made by:", "", "```bash", *commands, "```", ""]
    lines += [*textwrap.wrap(
        "Real steps are interactions with the REAL env (SB3's `num_timesteps`); imagined steps are counted apart. "
        "A check plays deterministic episodes of a fresh real env. **First pass**: the real steps of a run's first "
        "check whose mean return reaches the threshold. **Stays solved**: the real steps of the first passing check "
        f"that the next {STAY} checks confirm (all pass; a policy trained on a model often collapses right after its "
        "first pass). A run whose first pass collapses goes on looking for such a streak; one that ends after the "
        "budget does not count. Over seeds: the median and the interquartile mean (IQM: the mean of the middle 50% "
        f"of runs), each with its 95% bootstrap confidence interval (rliable, {BOOTSTRAP_REPS:,} resamples of the "
        "seeds), and the range (best – worst). A run that never got there counts as its budget, so `> N` marks a "
        "figure that this makes a lower bound. `n/a`: records made before the stays-solved metric stopped at their "
        "first pass; they cannot claim to have stayed solved, nor be said not to have. Speed-up: stock median / "
        "+dyna median. Wall vs stock: median wall seconds of +dyna / of stock (each run ends once solved and stayed "
        "solved, or at its budget). Worst check vs stock: the lowest, over the checks both have, of the median "
        "+dyna return minus the median stock return, in units of the threshold's distance from a random policy's "
        "return (>= -0.10: no harm done), and the real steps where it was.",
        112, break_on_hyphens=False), ""]  # fmt: skip
    for env in sorted({r["env"] for r in rows}):
        env_rows = [r for r in rows if r["env"] == env]
        threshold = env_rows[0]["threshold"]
        lines += [f"## {env} (threshold {threshold if threshold is not None else 'none: curves only'})", "",
                  "| algo | real steps to | solved | median (95% CI) | IQM (95% CI) | range | speed-up vs stock |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in env_rows:
            for prefix, name in _METRICS.items():
                cells = format_figures(r, prefix)
                lines.append(f"| {r['algo']} | {name} | {cells['solved']} | {cells['median']} | {cells['iqm']} | "
                             f"{cells['range']} | {format_speedup(r, prefix)} |")  # fmt: skip
        lines += ["", "| algo | runs | median final return | median wall (s) | wall vs stock | worst check vs stock "
                  "| imagined steps (median) | reward/termination |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in env_rows:
            lines.append(f"| {r['algo']} | {r['runs']} | {format_return(r)} | {r['median_wall_seconds']:.0f} | "
                         f"{format_ratio(r)} | {format_margin(r)} | {r['median_imagined_steps']:,.0f} | "
                         f"{r['reward_termination']} |")  # fmt: skip
        lines.append("")
    lines.append("![eval return vs real steps](curves.png)")
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        cells = {k: ("" if row[k] is None else row[k]) for k in _COLUMNS}
        writer.writerow({**cells, "lower_bounds": " ".join(row["lower_bounds"])})
    return out.getvalue()


def _median_curve(runs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Median, min and max over seeds on the union of check points. A run that stopped once solved (and stayed
    solved) keeps its last value from there on; before its first check it has no value."""
    grid = np.array(sorted({s for r in runs for s, _ in r["curve"]}), dtype=float)
    values = np.full((len(runs), len(grid)), np.nan)
    for i, run in enumerate(runs):
        if not run["curve"]:
            continue
        steps, returns = np.array(run["curve"], dtype=float).T
        index = np.searchsorted(steps, grid, side="right") - 1
        values[i] = np.where(index >= 0, returns[np.clip(index, 0, None)], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no run had checked yet there
        return grid, np.nanmedian(values, 0), np.nanmin(values, 0), np.nanmax(values, 0)


def _figure(records: list[dict[str, Any]], log_x: bool) -> Any:
    """One panel per env, side by side: eval return vs REAL steps, median line and min-max band per algo."""
    import matplotlib
    from matplotlib import ticker
    from matplotlib.figure import Figure  # not pyplot: a notebook's backend and figures stay untouched

    envs = sorted({r["env"] for r in records})
    fig = Figure(figsize=(6 * max(len(envs), 1), 4.2))
    axes = fig.subplots(1, max(len(envs), 1), squeeze=False)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    algos = sorted({r["algo"] for r in records})
    for ax, env in zip(axes[0], envs):
        by_algo: dict[str, list[dict]] = defaultdict(list)
        plotted = False
        for record in records:
            if record["env"] == env:
                by_algo[record["algo"]].append(record)
        for algo, runs in sorted(by_algo.items()):
            grid, median, low, high = _median_curve(runs)
            if not len(grid):  # no run of this algo reached its first check
                continue
            plotted = True
            color = colors[algos.index(algo) % len(colors)]
            style = "-" if algo.endswith(DYNA_SUFFIX) else "--"  # model-based solid, model-free dashed
            ax.plot(grid, median, style, color=color, drawstyle="steps-post", label=f"{algo} (median of {len(runs)})")
            ax.fill_between(grid, low, high, color=color, alpha=0.15, linewidth=0, step="post")
        threshold = next((r["threshold"] for r in records if r["env"] == env), None)
        if threshold is not None:
            ax.axhline(threshold, color="black", linestyle=":", linewidth=1, label=f"threshold {threshold:g}")
        if log_x and plotted:
            ax.set_xscale("log")
            # 200, 500, 1,000, 2,000, ...: a panel spanning less than a decade still gets readable labels
            ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(ticker.StrMethodFormatter("{x:,.0f}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set(title=env, xlabel="real environment steps", ylabel="mean eval return (deterministic)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_report(directory: str | Path, records: list[dict[str, Any]], log_x: bool = True,
                 rows: list[dict[str, Any]] | None = None) -> dict[str, Path]:  # fmt: skip
    """Write ``summary.csv``, ``summary.md`` and ``curves.png`` (eval return vs REAL steps, median line and
    min-max band over seeds, threshold line) into ``directory``; each file atomically. Returns their paths.

    :param directory: the results folder
    :param records: the runs
    :param log_x: a log-scaled real-step axis, so that a +dyna run that solves in hundreds of steps and a stock
        one that needs tens of thousands read side by side
    :param rows: ``summarize(records)``, where the caller has it already (its bootstrap takes seconds)
    """
    directory = Path(directory)
    rows = summarize(records) if rows is None else rows
    commands = sorted({r["command"] for r in records if r.get("command")})
    paths = {"csv": directory / "summary.csv", "md": directory / "summary.md", "png": directory / "curves.png"}
    atomic_write_text(paths["csv"], _csv(rows))
    atomic_write_text(paths["md"], _markdown(rows, commands))
    save_figure(_figure(records, log_x), paths["png"])
    return paths
