"""Re-train the models shipped with dream_envs, reproducibly by seed, and write their accuracy to docs/.

    python -m sb3_plugins.pretrain --env CartPole-v1 Acrobot-v1 Pendulum-v1 --seed 0

Recipe per env (the PETS/MBPO loop, written out): collect random real transitions, fit the ensemble, then for
a few rounds train a stock SB3 agent inside the dream, collect more real transitions with that agent's
(stochastic) policy, and refit on everything. The agent rounds put the states a good policy visits into the
data, which random actions alone never reach (a balanced pole, a swung-up acrobot). The file is saved
atomically into ``dream_envs/envs/pretrained/``; one-step and 10-step open-loop errors against the real env are
written to ``docs/pretrained/<env>.json`` and summarised in ``docs/pretrained_models.md``.

This lives in sb3_plugins because the agent rounds use SB3; dream_envs itself never imports it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from dream_envs import DreamEnv, EnsembleDynamics, TransitionBuffer, pretrained_model_path
from dream_envs.diagnostics import k_step_error
from dream_envs.io import atomic_write_text

__all__ = ["Recipe", "RECIPES", "train_pretrained", "main"]


@dataclass(frozen=True)
class Recipe:
    """How one shipped model is made.

    :param algo: the SB3 agent trained in the dream between rounds, ``"ppo"`` or ``"sac"``
    :param random_steps: real steps with uniform random actions
    :param rounds: agent rounds (train in the dream, collect real data with the agent, refit)
    :param dream_steps: agent training steps in the dream per round
    :param real_steps_per_round: real steps collected with the agent per round
    :param hidden_sizes: hidden layer widths of the ensemble
    :param ensemble_size: ensemble members
    :param num_elites: elite members
    :param max_epochs: cap on each fit's epochs

    Example::

        from sb3_plugins.pretrain import RECIPES

        print(RECIPES["CartPole-v1"])
    """

    algo: str
    random_steps: int
    rounds: int
    dream_steps: int
    real_steps_per_round: int
    hidden_sizes: tuple[int, ...] = (128, 128, 128)
    ensemble_size: int = 7
    num_elites: int = 5
    max_epochs: int = 100


RECIPES: dict[str, Recipe] = {
    "CartPole-v1": Recipe("ppo", random_steps=20_000, rounds=2, dream_steps=50_000, real_steps_per_round=10_000),
    "Acrobot-v1": Recipe("ppo", random_steps=30_000, rounds=2, dream_steps=100_000, real_steps_per_round=10_000),
    "Pendulum-v1": Recipe("sac", random_steps=20_000, rounds=1, dream_steps=15_000, real_steps_per_round=6_000),
}


def _dream_agent(algo: str, model: EnsembleDynamics, env_id: str, max_steps: int, seed: int):
    from stable_baselines3 import PPO, SAC

    dream = gym.wrappers.TimeLimit(
        DreamEnv(model, env_id=env_id, uncertainty_threshold="auto", seed=seed), max_episode_steps=max_steps
    )
    return (PPO if algo == "ppo" else SAC)("MlpPolicy", dream, seed=seed, verbose=0, device="cpu")


def _stochastic_policy(agent):
    return lambda obs: agent.predict(obs, deterministic=False)[0]


def train_pretrained(
    env_id: str, seed: int = 0, out: Path | None = None, docs: Path | None = Path("docs"), progress_bar: bool = False
) -> dict:
    """Make the shipped model of ``env_id`` and return the record written to ``docs``."""
    if env_id not in RECIPES:
        raise ValueError(f"no recipe for env_id={env_id!r}; known: {sorted(RECIPES)}")
    recipe = RECIPES[env_id]
    started = time.time()
    env = gym.make(env_id)
    max_steps = env.spec.max_episode_steps
    buffer = TransitionBuffer.from_env(env).collect(env, recipe.random_steps, seed=seed, progress_bar=progress_bar)
    model = EnsembleDynamics(
        env.observation_space,
        env.action_space,
        ensemble_size=recipe.ensemble_size,
        num_elites=recipe.num_elites,
        hidden_sizes=recipe.hidden_sizes,
        env_id=env_id,
        device="cpu",
        seed=seed,
    )
    fit = model.fit(buffer, max_epochs=recipe.max_epochs, seed=seed, progress_bar=progress_bar)
    agent = None
    for round_index in range(recipe.rounds):
        agent = _dream_agent(recipe.algo, model, env_id, max_steps, seed + round_index)
        agent.learn(recipe.dream_steps, progress_bar=progress_bar)
        buffer.collect(
            env,
            recipe.real_steps_per_round,
            policy=_stochastic_policy(agent),
            seed=seed + 1000 + round_index,
            progress_bar=progress_bar,
        )
        fit = model.fit(buffer, max_epochs=recipe.max_epochs, seed=seed + round_index + 1, progress_bar=progress_bar)

    path = Path(out or pretrained_model_path(env_id).parent) / f"{env_id}.pt"
    model.save(path)
    errors = {"random policy": k_step_error(model, gym.make(env_id), (1, 10), n_segments=300, seed=seed + 7)}
    if agent is not None:
        errors["dream-trained agent"] = k_step_error(
            model,
            gym.make(env_id),
            (1, 10),
            n_segments=300,
            seed=seed + 8,
            policy=_stochastic_policy(agent),
        )
    real_states = buffer.transitions().next_obs
    record = {
        "env_id": env_id,
        "seed": seed,
        "command": f"python -m sb3_plugins.pretrain --env {env_id} --seed {seed}",
        "recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in recipe.__dict__.items()},
        "real_steps": len(buffer),
        "file_bytes": path.stat().st_size,
        "holdout_mse_normalised": float(np.mean(fit.holdout_mse_per_member)),
        "termination_accuracy": fit.termination_accuracy,
        "auto_threshold": fit.auto_threshold,
        "state_std": real_states.std(axis=0).tolist(),
        "mae": {policy: {str(k): v.tolist() for k, v in by_k.items()} for policy, by_k in errors.items()},
        "wall_time_s": round(time.time() - started, 1),
        "versions": {"torch": torch.__version__, "gymnasium": gym.__version__, "python": platform.python_version()},
    }
    if docs is not None:
        docs_dir = Path(docs) / "pretrained"
        atomic_write_text(docs_dir / f"{env_id}.json", json.dumps(record, indent=2))
        write_summary(Path(docs))
    return record


def write_summary(docs: Path) -> Path:
    """Rebuild ``docs/pretrained_models.md`` from every ``docs/pretrained/*.json``."""
    lines = [
        "# Shipped dream models",
        "",
        "Each model is made by `python -m sb3_plugins.pretrain --env ENV --seed 0` (recipe in",
        "`sb3_plugins/pretrain.py`). Errors are mean absolute errors per observation dimension, open loop along",
        "the real env's actions from real states (ensemble elite mean), on fresh real segments; `std` is the",
        "spread of that dimension in the training data, for scale.",
        "",
    ]
    for record_path in sorted((docs / "pretrained").glob("*.json")):
        record = json.loads(record_path.read_text())
        lines += [
            f"## {record['env_id']}",
            "",
            f"- command: `{record['command']}` ({record['wall_time_s']} s on 2 CPU cores)",
            f"- real transitions: {record['real_steps']}; file: {record['file_bytes'] / 1e6:.2f} MB; "
            f"holdout MSE (normalised): {record['holdout_mse_normalised']:.2e}; termination accuracy: "
            f"{record['termination_accuracy']}; auto threshold: {record['auto_threshold']:.4f}",
            "",
            "| policy | k | " + " | ".join(f"dim {i}" for i in range(len(record["state_std"]))) + " |",
            "|---|---|" + "---|" * len(record["state_std"]),
            "| (std) | | " + " | ".join(f"{v:.3g}" for v in record["state_std"]) + " |",
        ]
        for policy, by_k in record["mae"].items():
            for k, values in by_k.items():
                lines.append(f"| {policy} | {k} | " + " | ".join(f"{v:.3g}" for v in values) + " |")
        lines.append("")
    path = docs / "pretrained_models.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", nargs="+", default=sorted(RECIPES), choices=sorted(RECIPES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="model folder (default: the package's pretrained/)")
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    parser.add_argument("--progress-bar", action="store_true")
    args = parser.parse_args(argv)
    # named before hours of training, not at the save that ends them; the recipes seed their rounds up to
    # seed + 1000 + rounds, and numpy and SB3 take seeds below 2**32
    highest = 2**32 - 1 - 1000 - max(recipe.rounds for recipe in RECIPES.values())
    if not 0 <= args.seed <= highest:
        parser.error(f"--seed must be in [0, {highest}] (gymnasium and SB3 seeds, and the seeds of the recipe's "
                     f"rounds derived from it), got {args.seed}")  # fmt: skip
    for option, folder in (("--out", args.out), ("--docs", args.docs)):
        for place in (folder, *folder.parents) if folder is not None else ():
            if place.exists() and not place.is_dir():
                parser.error(f"{option} {str(folder)!r}: {str(place)!r} is a file; expected a folder")
    torch.set_num_threads(1)
    for env_id in args.env:
        record = train_pretrained(env_id, args.seed, args.out, args.docs, args.progress_bar)
        print(json.dumps({k: record[k] for k in ("env_id", "real_steps", "holdout_mse_normalised", "wall_time_s")}))


if __name__ == "__main__":
    main()
