"""``dream-envs diagnose``: how wrong is a dream model, and does its disagreement know? Plots, tables, JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from dream_envs import DREAM_IDS, EnsembleDynamics, pretrained_model_path
from dream_envs.diagnostics import PROPAGATIONS, calibration, compounding_error
from dream_envs.io import atomic_write_text, save_figure

__all__ = ["diagnose_model", "load_diagnosed_model", "write_diagnostics_page"]


def load_diagnosed_model(model: str, env_id: str | None, device: str = "auto") -> tuple[EnsembleDynamics, str]:
    """A registered dream id (its shipped model and real env) or a model file (env from ``env_id`` or the file)."""
    if model in DREAM_IDS:
        real_id = DREAM_IDS[model][0]
        if env_id is not None and env_id != real_id:
            raise ValueError(f"{model} models {real_id}, not --env {env_id}")
        return EnsembleDynamics.load(pretrained_model_path(real_id), device=device), real_id
    if not Path(model).is_file():
        raise ValueError(f"--model {model!r} is neither a registered dream id ({', '.join(sorted(DREAM_IDS))}) nor "
                         "a model file")  # fmt: skip
    loaded = EnsembleDynamics.load(model, device=device)
    env_id = env_id or loaded.env_id
    if env_id is None:
        raise ValueError(f"the model file {model!r} does not name its env; pass --env")
    return loaded, env_id


def diagnose_model(
    model: EnsembleDynamics,
    env_id: str,
    out: str | Path,
    horizons: Sequence[int] = (1, 5, 10, 20),
    max_horizon: int = 50,
    n_segments: int = 200,
    calibration_horizon: int = 10,
    tolerance: float = 0.1,
    threshold: float | None = None,
    policy: Callable[[np.ndarray], Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Compounding error (single elite, elite mean, TS-1; k = 1..max_horizon) and calibration of one model on
    held-out real segments; writes ``<env>_compounding.png``, ``<env>_calibration.png`` and ``<env>.json``.

    :return: the summary written to the JSON file
    """
    horizons = sorted({int(k) for k in horizons})
    if not horizons or horizons[0] < 1:
        raise ValueError(f"--horizons must be integers >= 1, got {list(horizons)}")
    if max_horizon < horizons[-1]:
        raise ValueError(f"--max-horizon {max_horizon} is below the largest --horizons value {horizons[-1]}")
    env = gym.make(env_id)
    curve = compounding_error(model, env, max_horizon, n_segments, policy, PROPAGATIONS, seed)
    report = calibration(model, env, calibration_horizon, n_segments, tolerance, threshold, policy, seed + 1)
    out = Path(out)
    name = env_id.replace("/", "_")
    _plot_compounding(curve, env_id, out / f"{name}_compounding.png")
    _plot_calibration(report, env_id, out / f"{name}_calibration.png")
    summary = {
        "env": env_id, "n_segments": n_segments, "seed": seed, "policy": "random" if policy is None else "given",
        "obs_std": curve.obs_std.tolist(),
        "compounding": {str(k): {p: v.tolist() for p, v in curve.at(k).items()} for k in horizons},
        "compounding_curve": {p: v.tolist() for p, v in curve.errors.items()},
        "calibration": {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(report).items()
                        if k not in ("one_step", "k_step")},
    }  # fmt: skip
    atomic_write_text(out / f"{name}.json", json.dumps(summary, indent=1))
    return summary


def _plot_compounding(curve: Any, env_id: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = curve.obs_std.shape[0]
    fig, axes = plt.subplots(1, dims, figsize=(3.2 * dims, 3.0), squeeze=False)
    steps = np.arange(1, curve.max_horizon + 1)
    for d, ax in enumerate(axes[0]):
        for name, errors in curve.errors.items():
            ax.plot(steps, errors[:, d] / curve.obs_std[d], label=name)
        ax.set(title=f"obs[{d}]", xlabel="model steps k", yscale="log")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean |error| / real std")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{env_id}: open-loop error along real actions", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def _plot_calibration(report: Any, env_id: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    u, e = report.one_step
    axes[0].scatter(u, e, s=3, alpha=0.3)
    axes[0].set(xscale="log", yscale="log", xlabel="disagreement", ylabel="one-step error (delta std)",
                title=f"one step: Spearman {report.one_step_spearman:.2f}")  # fmt: skip
    axes[1].plot(*report.reliability.T, "o-")
    axes[1].set(xlabel="mean disagreement (decile)", ylabel="mean one-step error", title="reliability")
    ku, ke = report.k_step
    axes[2].scatter(ku, ke, s=5, alpha=0.4)
    axes[2].axvline(report.threshold, color="red", linestyle=":", label="cutoff threshold")
    axes[2].axhline(report.tolerance, color="black", linestyle=":", label="tolerance")
    axes[2].set(xscale="log", yscale="log", xlabel="largest disagreement on the way", ylabel="error (real std)",
                title=f"{report.horizon} steps: Spearman {report.k_step_spearman:.2f}")  # fmt: skip
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"{env_id}: does disagreement track the true error?", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def _number(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3g}"


def write_diagnostics_page(summaries: list[dict[str, Any]], path: Path, command: str) -> None:
    """One markdown page for the models of one ``dream-envs diagnose`` call."""
    lines = ["# Model diagnostics: compounding error and calibration", "", "Made by:", "", "```bash", command, "```",
             "", "Held-out real segments (a fresh seed), actions from the given policy (random unless stated). "
             "Compounding error: mean |imagined - real| after k model steps along the real actions, per observation "
             "dimension, in units of that dimension's real standard deviation. Calibration: Spearman rank "
             "correlation of the ensemble's disagreement (what the uncertainty cutoff compares) with the true "
             "one-step error and with the error after k steps; the cutoff's precision/recall at catching k-step "
             "rollouts whose error exceeds the tolerance (in real standard deviations).", ""]  # fmt: skip
    for summary in summaries:
        env, std = summary["env"], np.array(summary["obs_std"])
        name = env.replace("/", "_")
        lines += [f"## {env}", "", "| k | " + " | ".join(PROPAGATIONS) + " |", "|---|" + "---|" * len(PROPAGATIONS)]
        for k, by_propagation in summary["compounding"].items():
            cells = [", ".join(f"{v:.2g}" for v in np.array(by_propagation[p]) / std) for p in PROPAGATIONS]
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        c = summary["calibration"]
        lines += ["", f"![compounding error]({name}_compounding.png)", "",
                  "| one-step Spearman | k | k-step Spearman | threshold | tolerance | rollouts cut | rollouts bad "
                  "| cutoff precision | cutoff recall | held-out pairs |", "|---|---|---|---|---|---|---|---|---|---|",
                  f"| {_number(c['one_step_spearman'])} | {c['horizon']} | {_number(c['k_step_spearman'])} | "
                  f"{_number(c['threshold'])} | {_number(c['tolerance'])} | {c['cut_fraction']:.1%} | "
                  f"{c['bad_fraction']:.1%} | {_number(c['cutoff_precision'])} | {_number(c['cutoff_recall'])} | "
                  f"{c['n_samples']} |", "", f"![calibration]({name}_calibration.png)", ""]  # fmt: skip
    atomic_write_text(path, "\n".join(lines))
