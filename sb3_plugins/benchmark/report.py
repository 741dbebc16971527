"""Tables and plots from benchmark records: ``summary.csv``, ``summary.md`` and ``curves.png``."""

from __future__ import annotations

import csv
import io
import warnings
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from dream_envs.io import atomic_write_text, save_figure
from sb3_plugins.benchmark.hyperparams import DYNA_SUFFIX

__all__ = ["summarize", "write_report"]

_COLUMNS = ("env", "algo", "runs", "solved", "threshold", "budget", "median_real_steps", "min_real_steps",
            "max_real_steps", "speedup_vs_stock", "speedup_is_lower_bound", "median_final_return",
            "median_wall_seconds", "median_imagined_steps", "reward_termination")  # fmt: skip


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (env, algo): runs, solved, median/min/max real steps to threshold (``inf`` for unsolved runs),
    median final return, wall time and imagined steps, and each ``+dyna`` algo's speed-up over its stock algo
    (median real steps of stock / of +dyna; a lower bound where the stock median did not solve in its budget)."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in records:
        groups[(record["env"], record["algo"])].append(record)
    rows = {}
    for (env, algo), runs in sorted(groups.items()):
        steps = np.array([r["real_steps_to_threshold"] if r["real_steps_to_threshold"] is not None else np.inf
                          for r in runs], dtype=float)  # fmt: skip
        finals = [r["final_return"] for r in runs if r["final_return"] is not None]
        rows[(env, algo)] = {
            "env": env, "algo": algo, "runs": len(runs), "solved": int(np.isfinite(steps).sum()),
            "threshold": runs[0]["threshold"], "budget": max(r["budget"] for r in runs),
            "median_real_steps": float(np.median(steps)), "min_real_steps": float(steps.min()),
            "max_real_steps": float(steps.max()), "speedup_vs_stock": None, "speedup_is_lower_bound": False,
            "median_final_return": float(np.median(finals)) if finals else None,
            "median_wall_seconds": float(np.median([r["wall_seconds"] for r in runs])),
            "median_imagined_steps": float(np.median([r["imagined_steps"] for r in runs])),
            "reward_termination": "/".join(sorted({r["reward_termination"] for r in runs})),
        }  # fmt: skip
    for (env, algo), row in rows.items():
        stock = rows.get((env, algo[: -len(DYNA_SUFFIX)])) if algo.endswith(DYNA_SUFFIX) else None
        if stock is None or not np.isfinite(row["median_real_steps"]):
            continue
        stock_steps = stock["median_real_steps"]
        if not np.isfinite(stock_steps):  # stock did not solve: it needs more than its whole budget
            row["speedup_vs_stock"], row["speedup_is_lower_bound"] = stock["budget"] / row["median_real_steps"], True
        else:
            row["speedup_vs_stock"] = stock_steps / row["median_real_steps"]
    return list(rows.values())


def format_steps(value: float, budget: int) -> str:
    """Real steps as a table shows them: ``> budget`` where no run (or not the median one) solved."""
    return f"> {budget:,}" if not np.isfinite(value) else f"{int(value):,}"


def format_speedup(row: dict[str, Any]) -> str:
    if row["speedup_vs_stock"] is None:
        return ""
    return f"{'>= ' if row['speedup_is_lower_bound'] else ''}{row['speedup_vs_stock']:.1f}x"


def format_return(row: dict[str, Any]) -> str:
    return "" if row["median_final_return"] is None else f"{row['median_final_return']:.1f}"


def _markdown(rows: list[dict[str, Any]], commands: list[str]) -> str:
    lines = ["# Benchmark: real steps to threshold, model-free vs model-based", ""]
    if commands:
        lines += ["Made by:", "", "```bash", *commands, "```", ""]
    lines += [
        "Real steps are interactions with the REAL env (SB3's `num_timesteps`); imagined steps are counted apart.",
        "A run is solved at its first check (deterministic episodes of a fresh real env) whose mean return reaches",
        "the threshold; `> budget` means never within its budget. Speed-up: stock median / +dyna median.",
        "",
    ]
    for env in sorted({r["env"] for r in rows}):
        env_rows = [r for r in rows if r["env"] == env]
        threshold = env_rows[0]["threshold"]
        lines += [f"## {env} (threshold {threshold if threshold is not None else 'none: curves only'})", "",
                  "| algo | runs | solved | median real steps | range | speed-up vs stock | median final return "
                  "| median wall (s) | imagined steps (median) | reward/termination |",
                  "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in env_rows:
            steps = partial(format_steps, budget=r["budget"])
            lines.append(
                f"| {r['algo']} | {r['runs']} | {r['solved']}/{r['runs']} | "
                f"{steps(r['median_real_steps'])} | {steps(r['min_real_steps'])} – {steps(r['max_real_steps'])} | "
                f"{format_speedup(r)} | {format_return(r)} | {r['median_wall_seconds']:.0f} | "
                f"{r['median_imagined_steps']:,.0f} | {r['reward_termination']} |"
            )
        lines.append("")
    lines.append("![eval return vs real steps](curves.png)")
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in _COLUMNS})
    return out.getvalue()


def _median_curve(runs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Median, min and max over seeds on the union of check points. A run that stopped at its first passing check
    keeps its last value from there on (it counts as solved); before its first check it has no value."""
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


def _plot(records: list[dict[str, Any]], path: Path, log_x: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    envs = sorted({r["env"] for r in records})
    fig, axes = plt.subplots(1, max(len(envs), 1), figsize=(6 * max(len(envs), 1), 4.2), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
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
        ax.set(title=env, xlabel="real environment steps", ylabel="mean eval return (deterministic)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def write_report(directory: str | Path, records: list[dict[str, Any]], log_x: bool = False) -> dict[str, Path]:
    """Write ``summary.csv``, ``summary.md`` and ``curves.png`` (eval return vs REAL steps, median line and
    min-max band over seeds, threshold line) into ``directory``; each file atomically. Returns their paths."""
    directory = Path(directory)
    rows = summarize(records)
    commands = sorted({r["command"] for r in records if r.get("command")})
    paths = {"csv": directory / "summary.csv", "md": directory / "summary.md", "png": directory / "curves.png"}
    atomic_write_text(paths["csv"], _csv(rows))
    atomic_write_text(paths["md"], _markdown(rows, commands))
    _plot(records, paths["png"], log_x)
    return paths
