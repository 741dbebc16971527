"""Does the uncertainty cutoff catch the dream rollouts that go wrong? Precision and recall on held-out real data.

    python benchmarks/calibration.py                          # every env below; resumes, writes docs/uncertainty.md
    python benchmarks/calibration.py --envs Pendulum-v1 --segments 300

For every shipped model (Dream-CartPole-v0, Dream-Acrobot-v0, Dream-Pendulum-v0) and every env of the transfer
issue (a model fitted here with `EnsembleDynamics` and `fit` defaults on 10,000 random-action real steps and 10,000
steps of a trained policy's stochastic actions), on FRESH real trajectories from uniform random actions and from a
trained policy (deterministic): 10-step rollouts of the model (elite mean) from real states along the real actions;
a rollout is bad when its error after 10 steps exceeds 0.1 real standard deviations (worst dimension); the cutoff
catches it when the disagreement exceeds the model's "auto" threshold at any of its steps. Reported: precision and
recall of the cutoff, rank correlation of the largest disagreement with the error, and, for the alternatives the
choice was made against, their rank correlation and best possible precision at recall 0.8.

The trained policies are stock SB3 agents trained on the real env (settings in POLICIES), cached with the fitted
models under runs/calibration/ (git-ignored), so a rerun only measures.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import dream_envs
from dream_envs import EnsembleDynamics, TransitionBuffer
from dream_envs.diagnostics import real_segments
from dream_envs.io import atomic_write_text
from dream_envs.models.calibration import cutoff_scores, open_loop, precision_recall, spearman
from sb3_plugins.dream_training import ALGOS

SHIPPED = {real: dream for dream, (real, _, _) in dream_envs.DREAM_IDS.items()}
# env -> (algo, real steps, SB3 keyword arguments): a trained policy, not a tuned one (rl-zoo settings where rl-zoo
# has them).
POLICIES: dict[str, tuple[str, int, dict]] = {
    "CartPole-v1": ("ppo", 100_000, {"n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98,
                                     "n_epochs": 20, "ent_coef": 0.0, "learning_rate": 1e-3, "clip_range": 0.2}),
    "Acrobot-v1": ("ppo", 100_000, {"n_steps": 256, "gae_lambda": 0.94, "gamma": 0.99, "n_epochs": 4}),
    "Pendulum-v1": ("sac", 15_000, {"learning_rate": 1e-3}),
    "MountainCarContinuous-v0": ("sac", 50_000, {
        "learning_rate": 3e-4, "buffer_size": 50_000, "batch_size": 512, "ent_coef": 0.1, "train_freq": 32,
        "gradient_steps": 32, "gamma": 0.9999, "tau": 0.01, "learning_starts": 0, "use_sde": True,
        "policy_kwargs": {"log_std_init": -3.67, "net_arch": [64, 64]}}),
    "InvertedPendulum-v5": ("sac", 15_000, {}),
    "InvertedDoublePendulum-v5": ("sac", 30_000, {}),
    "Reacher-v5": ("sac", 20_000, {}),
    "HalfCheetah-v5": ("sac", 30_000, {"learning_starts": 10_000}),
}  # fmt: skip
FIT_STEPS = 10_000  # random-action steps, and as many policy steps, for the models fitted here
HORIZON, TOLERANCE = 10, 0.1


def trained_policy(env_id: str, cache: Path, seed: int = 0):
    algo, steps, kwargs = POLICIES[env_id]
    path = cache / "policies" / f"{env_id}.zip"
    if path.is_file():
        return ALGOS[algo].load(path, device="cpu")
    n_envs = 8 if algo == "ppo" else 1
    from stable_baselines3.common.env_util import make_vec_env

    agent = ALGOS[algo]("MlpPolicy", make_vec_env(env_id, n_envs=n_envs, seed=seed), seed=seed, device="cpu",
                        verbose=0, **kwargs)  # fmt: skip
    agent.learn(steps)
    path.parent.mkdir(parents=True, exist_ok=True)
    agent.save(path)
    return agent


def model_for(env_id: str, agent, cache: Path, seed: int = 0) -> tuple[EnsembleDynamics, str]:
    if env_id in SHIPPED:
        return gym.make(SHIPPED[env_id]).unwrapped.model, f"shipped ({SHIPPED[env_id]})"
    path = cache / "models" / f"{env_id}.pt"
    what = f"fitted here: {FIT_STEPS:,} random + {FIT_STEPS:,} policy steps, defaults"
    if path.is_file():
        return EnsembleDynamics.load(path, device="cpu"), what
    env = gym.make(env_id)
    buffer = TransitionBuffer.from_env(env).collect(env, FIT_STEPS, seed=seed)
    buffer.collect(env, FIT_STEPS, policy=lambda obs: agent.predict(obs, deterministic=False)[0], seed=seed + 1)
    model = EnsembleDynamics(env.observation_space, env.action_space, env_id=env_id, device="cpu", seed=seed)
    model.fit(buffer, seed=seed)
    model.save(path)
    return model, what


@torch.no_grad()
def alternatives(model: EnsembleDynamics, real_obs: np.ndarray, actions: np.ndarray, errors: np.ndarray) -> dict:
    """Rank correlation and best precision at recall 0.8 of other disagreement measures, on the same rollouts."""
    first = torch.as_tensor(real_obs[:, 0])
    imagined, _ = open_loop(model, first, torch.as_tensor(actions))
    states = torch.cat([first[None], imagined[:-1]])  # (T, S, obs_dim): the input of each step
    scale = model.obs_scale
    # The earlier units: each dimension's one-step change; a dimension that never changed has none (and no spread).
    delta_std = torch.where(model.out_std[: model.obs_dim] > 0, model.out_std[: model.obs_dim], torch.inf)
    measures: dict[str, list] = {"members, real std (chosen)": [], "members, delta std (before)": [],
                                 "elites only, real std": [], "elites, total predictive std": []}  # fmt: skip
    for t in range(actions.shape[1]):
        prediction = model.predict(states[t], torch.as_tensor(actions[:, t]))
        means, elites = prediction.delta_mean, model.elite_idx  # (E, S, obs_dim)
        measures["members, real std (chosen)"].append((means.std(0, unbiased=False) / scale).amax(-1))
        measures["members, delta std (before)"].append((means.std(0, unbiased=False) / delta_std).amax(-1))
        measures["elites only, real std"].append((means[elites].std(0, unbiased=False) / scale).amax(-1))
        total = means[elites].var(0, unbiased=False) + prediction.delta_var[elites].mean(0)
        measures["elites, total predictive std"].append((total.sqrt() / scale).amax(-1))
    bad = errors > TOLERANCE
    measures["members, real std, summed over steps"] = measures["members, real std (chosen)"]
    out = {}
    for name, values in measures.items():
        steps = torch.stack(values)  # (T, S)
        score = (steps.sum(0) if "summed" in name else steps.amax(0)).numpy()
        best = float("nan")
        if bad.sum() >= 1:
            order = np.argsort(-score, kind="stable")
            caught = np.cumsum(bad[order])
            reach = np.flatnonzero(caught >= np.ceil(0.8 * bad.sum()))[0]
            best = float(caught[reach] / (reach + 1))
        out[name] = {"spearman": spearman(score, errors), "best_precision_at_recall_0.8": best}
    return out


def measure(env_id: str, cache: Path, segments: int, seed: int = 0) -> dict:
    started = time.time()
    agent = trained_policy(env_id, cache, seed)
    model, what = model_for(env_id, agent, cache, seed)
    env = gym.make(env_id)
    record = {"env": env_id, "model": what, "threshold": float(model.auto_threshold),
              "calibration": model.cutoff_calibration.as_dict() if model.cutoff_calibration else None,
              "policy": {"algo": POLICIES[env_id][0], "real_steps": POLICIES[env_id][1]}, "results": {}}  # fmt: skip
    policies = {"random": None, "trained policy": lambda obs: agent.predict(obs, deterministic=True)[0]}
    for offset, (name, policy) in enumerate(policies.items()):
        real_obs, actions = real_segments(env, HORIZON, segments, policy=policy, seed=10_000 + seed + offset)
        scores, _, errors = cutoff_scores(model, real_obs, actions)
        precision, recall = precision_recall(scores, errors, record["threshold"], TOLERANCE)
        record["results"][name] = {
            "segments": segments, "bad_fraction": float((errors > TOLERANCE).mean()),
            "cut_fraction": float((scores > record["threshold"]).mean()), "precision": precision, "recall": recall,
            "spearman": spearman(scores, errors), "alternatives": alternatives(model, real_obs, actions, errors),
        }  # fmt: skip
    record["wall_s"] = round(time.time() - started, 1)
    return record


def _f(value: float | None, digits: str = ".2f") -> str:
    return "n/a" if value is None or not np.isfinite(value) else format(value, digits)


def met(result: dict) -> str:
    """Precision >= 0.5 and recall >= 0.8 (undefined counts as met: nothing bad to catch, or nothing cut);
    rank correlation >= 0.5."""
    p, r, rho = result["precision"], result["recall"], result["spearman"]
    ok = (not np.isfinite(p) or p >= 0.5) and (not np.isfinite(r) or r >= 0.8) and np.isfinite(rho) and rho >= 0.5
    return "yes" if ok else "NO"


def write_markdown(records: list[dict], path: Path) -> None:
    lines = [
        "# The uncertainty cutoff against the real error",
        "",
        "Made by `python benchmarks/calibration.py` (2-core CPU, 1 torch thread, torch "
        f"{torch.__version__}, Python {platform.python_version()}); what it measures is in the script's docstring.",
        "Targets: precision >= 0.5 and recall >= 0.8 at catching 10-step rollouts whose error exceeds 0.1 real",
        "standard deviations, and rank correlation (Spearman) of the largest disagreement with that error >= 0.5,",
        "on fresh real trajectories from random actions and from a trained policy. `n/a`: nothing to measure (no bad",
        "rollout, or none cut); such a cell counts as met.",
        "",
        "| env | model | auto threshold (how) | trajectories | bad | cut | precision | recall | Spearman | met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for record in records:
        how = record["calibration"]["method"] if record["calibration"] else "?"
        for name, result in record["results"].items():
            lines.append(
                f"| {record['env']} | {record['model']} | {record['threshold']:.4f} ({how}) | {name} | "
                f"{result['bad_fraction']:.1%} | {result['cut_fraction']:.1%} | {_f(result['precision'])} | "
                f"{_f(result['recall'])} | {_f(result['spearman'])} | {met(result)} |"
            )
    lines += ["", "## Measures compared (same rollouts): Spearman / best precision at recall 0.8", "",
              "| env | trajectories | " + " | ".join(next(iter(records[0]["results"].values()))["alternatives"]) + " |",
              "|---|---|" + "---|" * len(next(iter(records[0]["results"].values()))["alternatives"])]  # fmt: skip
    for record in records:
        for name, result in record["results"].items():
            cells = [f"{_f(v['spearman'])} / {_f(v['best_precision_at_recall_0.8'])}"
                     for v in result["alternatives"].values()]  # fmt: skip
            lines.append(f"| {record['env']} | {name} | " + " | ".join(cells) + " |")
    atomic_write_text(path, "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    parser.add_argument("--segments", type=int, default=1000)
    parser.add_argument("--cache", type=Path, default=Path("runs/calibration"))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--rerun", action="store_true", help="measure envs that already have a record")
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = args.out / "uncertainty.json"
    for env_id in args.envs:
        records = json.loads(path.read_text()) if path.exists() else []
        if not args.rerun and any(r["env"] == env_id for r in records):
            continue
        try:
            gym.make(env_id)
        except Exception as error:  # an optional dependency (MuJoCo) missing: say so and go on
            print(f"skipping {env_id}: {error}")
            continue
        record = measure(env_id, args.cache, args.segments)
        print(json.dumps({k: record[k] for k in ("env", "threshold", "wall_s")}), flush=True)
        records = json.loads(path.read_text()) if path.exists() else []
        records = [r for r in records if r["env"] != env_id] + [record]
        records.sort(key=lambda r: list(POLICIES).index(r["env"]))
        atomic_write_text(path, json.dumps(records, indent=1))
        write_markdown(records, args.out / "uncertainty.md")


if __name__ == "__main__":
    main()
