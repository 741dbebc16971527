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
from dream_envs.spaces import spaces_equal
from sb3_plugins.benchmark.hyperparams import check_env_id

__all__ = ["diagnose_model", "load_diagnosed_model", "write_diagnostics_page"]


def dream_mode(model: str) -> str:
    """The uncertainty mode a registered dream id uses by default (``DreamEnv``'s default for a model file)."""
    import inspect

    from dream_envs import DreamEnv

    default = inspect.signature(DreamEnv).parameters["uncertainty_mode"].default
    return gym.spec(model).kwargs.get("uncertainty_mode", default) if model in DREAM_IDS else default


def load_diagnosed_model(model: str, env_id: str | None, device: str = "auto") -> tuple[EnsembleDynamics, str]:
    """A registered dream id (its shipped model and real env) or a model file (env from ``env_id`` or the file)."""
    if env_id is not None:
        check_env_id(env_id)
    if model in DREAM_IDS:
        real_id = DREAM_IDS[model][0]
        if env_id is not None and env_id != real_id:
            raise ValueError(f"{model} models {real_id}, not --env {env_id}")
        return EnsembleDynamics.load(pretrained_model_path(real_id), device=device), real_id
    if not Path(model).is_file():
        raise ValueError(f"--model {model!r} is neither a registered dream id ({', '.join(sorted(DREAM_IDS))}) nor "
                         "a model file")  # fmt: skip
    loaded = EnsembleDynamics.load(model, device=device)
    named = loaded.env_id
    if env_id is not None and named is not None and env_id.rpartition(":")[2] != named.rpartition(":")[2]:
        raise ValueError(f"the model file {model!r} models {named}, not --env {env_id} (--env is the real env of every "
                         "--model file: a file that names another env goes in a call of its own)")  # fmt: skip
    if env_id is None:
        if named is None:
            raise ValueError(f"the model file {model!r} does not name its env; pass --env")
        try:
            check_env_id(named)
        except ValueError as error:
            if ":" in named:  # its module is named too: it is not importable here
                raise ValueError(f"the model file {model!r} models {named!r}: {error}") from None
            raise ValueError(
                f"the model file {model!r} models {named!r}, which is not registered here: pass --env "
                f"your_module:{named} (the module that registers it is imported first)"
            ) from None
        env_id = named
    env = gym.make(env_id)
    env.close()
    if env.observation_space.shape != loaded.observation_space.shape or not spaces_equal(
        env.action_space, loaded.action_space
    ):
        raise ValueError(f"the model file {model!r} has the spaces ({loaded.observation_space}, "
                         f"{loaded.action_space}), which differ from {env_id}'s ({env.observation_space}, "
                         f"{env.action_space})")  # fmt: skip
    return loaded, env_id


def diagnose_model(
    model: EnsembleDynamics,
    env_id: str,
    out: str | Path,
    horizons: Sequence[int] = (1, 5, 10, 20),
    max_horizon: int = 50,
    n_segments: int = 200,
    calibration_horizon: int = 10,
    tolerance: float | None = None,
    threshold: float | None = None,
    policy: Callable[[np.ndarray], Any] | None = None,
    seed: int = 0,
    uncertainty_mode: str = "truncate",
    label: str | None = None,
) -> dict[str, Any]:
    """Compounding error (single elite, elite mean, TS-1; k = 1..max_horizon) and calibration of one model on
    held-out real segments from random actions and, when ``policy`` is given, from that policy; writes
    ``<env>_compounding.png``, ``<env>_calibration.png`` and ``<env>.json``.

    :param uncertainty_mode: what the dream does at the cutoff, reported beside the calibration
    :param label: names the files and the page section instead of the env id (several models of one env)
    :return: the summary written to the JSON file
    """
    horizons = checked_horizons(horizons, max_horizon)
    env = gym.make(env_id)
    curve = compounding_error(model, env, max_horizon, n_segments, None, PROPAGATIONS, seed)
    reports = {"random": calibration(model, env, calibration_horizon, n_segments, tolerance, threshold, None, seed + 1)}
    if policy is not None:
        reports["policy"] = calibration(model, env, calibration_horizon, n_segments, tolerance, threshold, policy,
                                        seed + 2)  # fmt: skip
    out = Path(out)
    name = file_name(label or env_id)
    _plot_compounding(curve, env_id, out / f"{name}_compounding.png")
    _plot_calibration(reports, env_id, out / f"{name}_calibration.png")
    summary = {
        "env": env_id, "label": label or env_id, "n_segments": n_segments, "seed": seed,
        "obs_std": curve.obs_std.tolist(), "obs_scale": model.obs_scale.cpu().tolist(),
        "uncertainty_mode": uncertainty_mode,
        "auto_calibration": None if model.cutoff_calibration is None else model.cutoff_calibration.as_dict(),
        "compounding": {str(k): {p: v.tolist() for p, v in curve.at(k).items()} for k in horizons},
        "compounding_curve": {p: v.tolist() for p, v in curve.errors.items()},
        "calibration": {trajectories: {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                                       for k, v in vars(report).items() if k not in ("one_step", "k_step")}
                        for trajectories, report in reports.items()},
    }  # fmt: skip
    atomic_write_text(out / f"{name}.json", json.dumps(_strict_json(summary), indent=1))
    return summary


def checked_horizons(horizons: Sequence[int], max_horizon: int) -> list[int]:
    """The k-step horizons, sorted and without repeats, once they are all >= 1 and within the curve's
    ``max_horizon``; the CLI calls it before it makes the output folder."""
    horizons = sorted({int(k) for k in horizons})
    if not horizons or horizons[0] < 1:
        raise ValueError(f"--horizons must be integers >= 1, got {list(horizons)}")
    if max_horizon < horizons[-1]:
        raise ValueError(f"--max-horizon {max_horizon} is below the largest --horizons value {horizons[-1]}")
    return horizons


def file_name(env_id: str) -> str:
    """An env id as a file name: ``"my_pkg:Env-v0"`` or ``"ALE/Pong-v5"`` -> ``"my_pkg_Env-v0"``, ``"ALE_Pong-v5"``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in env_id)


def _strict_json(value: Any) -> Any:
    """NaN/inf (nothing to measure) become null: the file stays strict JSON."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict_json(v) for v in value]
    return value


def _plot_compounding(curve: Any, env_id: str, path: Path) -> None:
    from matplotlib.figure import Figure  # not pyplot: the user's backend and figure registry stay untouched

    dims = curve.obs_std.shape[0]
    fig = Figure(figsize=(3.2 * dims, 3.0))
    axes = fig.subplots(1, dims, squeeze=False)
    steps = np.arange(1, curve.max_horizon + 1)
    for d, ax in enumerate(axes[0]):
        for name, errors in curve.errors.items():
            ax.plot(steps, errors[:, d] / max(curve.obs_std[d], 1e-12), label=name)  # a constant dim: its raw error
        ax.set(title=f"obs[{d}]", xlabel="model steps k", yscale="log")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean |error| / real std")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{env_id}: open-loop error along real actions", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def _plot_calibration(reports: dict[str, Any], env_id: str, path: Path) -> None:
    from matplotlib.figure import Figure  # not pyplot: the user's backend and figure registry stay untouched

    fig = Figure(figsize=(12, 3.4))
    axes = fig.subplots(1, 3)
    for trajectories, report in reports.items():
        u, e = report.one_step
        axes[0].scatter(u, e, s=3, alpha=0.3, label=trajectories)
        axes[1].plot(*report.reliability.T, "o-", label=trajectories)
        ku, ke = report.k_step
        axes[2].scatter(ku, ke, s=5, alpha=0.4, label=f"{trajectories}: P {report.cutoff_precision:.2f}, "
                        f"R {report.cutoff_recall:.2f}")  # fmt: skip
    report = reports["random"]
    axes[0].set(xscale="log", yscale="log", xlabel="disagreement", ylabel="one-step error (std of the change)",
                title="one step")  # fmt: skip
    axes[1].set(xlabel="mean disagreement (decile)", ylabel="mean one-step error", title="reliability")
    axes[2].axvline(report.threshold, color="red", linestyle=":", label="cutoff threshold")
    axes[2].axhline(report.tolerance, color="black", linestyle=":", label="tolerance")
    axes[2].set(xscale="log", yscale="log", xlabel="accumulated disagreement", ylabel="error (real std)",
                title=f"{report.horizon} steps")  # fmt: skip
    for ax in axes:
        ax.legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"{env_id}: does disagreement track the true error? (k-step errors in real std)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def _number(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3g}"


def write_diagnostics_page(summaries: list[dict[str, Any]], path: Path, command: str) -> None:
    """One markdown page for the models of one ``dream-envs diagnose`` call."""
    lines = ["# Model diagnostics: compounding error and calibration", "", "Made by:", "", "```bash", command, "```",
             "", "Held-out real segments (a fresh seed). Compounding error (random actions): mean |imagined - real| "
             "after k model steps along the real actions, per observation dimension, in units of that dimension's "
             "real standard deviation (its spread in the model's fit data, the unit of the tolerance). "
             "Calibration, on random-action and (where given) trained-policy segments: Spearman rank correlation "
             "of the ensemble's disagreement (what the uncertainty cutoff compares, in standard deviations of each "
             "dimension's one-step change) with the true one-step error (same units) and with the error after k "
             "steps (elite mean, real standard deviations); the cutoff's precision/recall at "
             "catching k-step rollouts whose error exceeds the tolerance. `n/a`: nothing to measure (no rollout "
             "was bad, or none was cut).", ""]  # fmt: skip
    for summary in summaries:
        env, scale = summary["env"], np.array(summary["obs_scale"])
        name = file_name(summary.get("label", env))
        auto = summary.get("auto_calibration") or {}
        lines += [f"## {summary.get('label', env)}", "",
                  f"Uncertainty mode at the cutoff: `{summary['uncertainty_mode']}`. Auto threshold "
                  f"{_number(auto.get('threshold'))} ({auto.get('method', 'n/a')}, on {auto.get('n_segments', 0)} "
                  f"held-out rollouts of the fit, {auto.get('n_bad', 0)} bad).", "",
                  "| k | " + " | ".join(PROPAGATIONS) + " |", "|---|" + "---|" * len(PROPAGATIONS)]  # fmt: skip
        for k, by_propagation in summary["compounding"].items():
            cells = [", ".join(f"{v:.2g}" for v in np.array(by_propagation[p]) / scale) for p in PROPAGATIONS]
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        lines += ["", f"![compounding error]({name}_compounding.png)", "",
                  "| trajectories | one-step Spearman | k | k-step Spearman | threshold | tolerance | rollouts cut "
                  "| rollouts bad | cutoff precision | cutoff recall | held-out pairs |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for trajectories, c in summary["calibration"].items():
            lines.append(f"| {trajectories} | {_number(c['one_step_spearman'])} | {c['horizon']} | "
                         f"{_number(c['k_step_spearman'])} | {_number(c['threshold'])} | {_number(c['tolerance'])} | "
                         f"{c['cut_fraction']:.1%} | {c['bad_fraction']:.1%} | {_number(c['cutoff_precision'])} | "
                         f"{_number(c['cutoff_recall'])} | {c['n_samples']} |")  # fmt: skip
        lines += ["", f"![calibration]({name}_calibration.png)", ""]
    atomic_write_text(path, "\n".join(lines))
