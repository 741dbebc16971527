"""How long should DynaCallback fit its model? Test error and wall time of fitting rules, on the data Dyna sees.

    python benchmarks/fit_budget.py                     # every env below; writes docs/fit_budget.md (+ .json)
    python benchmarks/fit_budget.py --envs Pendulum-v1 --rules auto fixed-50

Dyna refits its ensemble every 250 real steps on all the real data so far, continuing from the previous weights.
This replays that: for each env, a stream of real transitions whose actions move from uniform random to a trained
policy's (stochastic) actions, as an agent's do while it learns; refits at every 250 rows up to ``--rows``; after
each, the one-step error of the elite mean on FRESH real transitions of the same mix (MSE in units of the real
spread of each output, mean over observation dims, and the reward's alone). Rules compared:

- ``fixed-50``: 50 epochs of 256-row batches, patience 5 (DynaCallback's default before issue 14)
- ``tuned``: 300 epochs of 32-row batches, patience 20 (the per-env CartPole row that issue 14 removed)
- ``auto``: :func:`dream_envs.models.fit_schedule` (batch, gradient-step budget and patience from the data size,
  smaller budget for a warm refit), what ``EnsembleDynamics.fit`` does now when they are not given
- ``auto-cold``: ``auto``, but the weights re-initialised before every refit (is the warm start worth it?)

The trained policies are the ones benchmarks/calibration.py caches under runs/calibration/ (trained there if
missing); an env with none uses random actions only.
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

from dream_envs import EnsembleDynamics, TransitionBuffer
from dream_envs.io import atomic_write_text

ENVS = ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "InvertedPendulum-v5", "Hopper-v5")
RULES = ("fixed-50", "tuned", "auto", "auto-cold")
FIXED = {"fixed-50": {"max_epochs": 50, "patience": 5, "batch_size": 256},
         "tuned": {"max_epochs": 300, "patience": 20, "batch_size": 32}}  # fmt: skip
REFIT_EVERY = 250


def stream(env_id: str, n: int, policy, seed: int) -> TransitionBuffer:
    """``n`` real transitions whose share of policy actions grows linearly from 0 to 1 (random without a policy)."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    rng = np.random.default_rng(seed)
    step = [0]

    def act(obs):
        step[0] += 1
        if policy is None or rng.random() > step[0] / n:
            return env.action_space.sample()
        return policy(obs)

    return TransitionBuffer.from_env(env).collect(env, n, policy=act, seed=seed)


def one_step_error(model: EnsembleDynamics, test: TransitionBuffer) -> tuple[float, float]:
    data = test.transitions()
    with torch.no_grad():
        prediction = model.predict(data.obs, data.action)
        elite = prediction.delta_mean[model.elite_idx].mean(0).numpy()
        reward = prediction.reward_mean[model.elite_idx].mean(0).numpy()
    delta = data.next_obs - data.obs
    spread = delta.std(0)
    obs_err = ((elite - delta) ** 2)[:, spread > 1e-8] / spread[spread > 1e-8] ** 2
    reward_spread = data.reward.std()
    reward_err = ((reward - data.reward) ** 2).mean() / reward_spread**2 if reward_spread > 1e-8 else 0.0
    return float(obs_err.mean()), float(reward_err)


def run(env_id: str, rule: str, rows: int, policy, seed: int) -> dict:
    torch.manual_seed(seed)
    full = stream(env_id, rows, policy, seed)
    test = stream(env_id, 2_000, policy, seed + 1_000)
    env = gym.make(env_id)
    data = full.transitions()
    model = None
    record = {"rows": [], "obs_error": [], "reward_error": [], "epochs": [], "gradient_steps": [], "fit_s": []}
    for n in range(REFIT_EVERY, rows + 1, REFIT_EVERY):
        if model is None or rule == "auto-cold":
            model = EnsembleDynamics(env.observation_space, env.action_space, device="cpu", seed=seed)
        part = TransitionBuffer.from_env(env, capacity=n)
        part.add(data.obs[:n], data.action[:n], data.reward[:n], data.next_obs[:n], data.terminated[:n],
                 data.truncated[:n], data.episode_start[:n])  # fmt: skip
        started = time.perf_counter()
        result = model.fit(part, seed=seed + n, **FIXED.get(rule, {}))
        record["fit_s"].append(time.perf_counter() - started)
        obs_err, reward_err = one_step_error(model, test)
        record["rows"].append(n)
        record["obs_error"].append(obs_err)
        record["reward_error"].append(reward_err)
        record["epochs"].append(result.epochs)
        record["gradient_steps"].append(result.gradient_steps)
    return record


def policy_for(env_id: str, cache: Path):
    path = cache / "policies" / f"{env_id}.zip"
    if not path.is_file():
        return None
    from sb3_plugins.dream_training import ALGOS

    for algo in ("ppo", "sac", "dqn"):
        try:
            agent = ALGOS[algo].load(path, device="cpu")
        except (ValueError, KeyError, RuntimeError, AttributeError, TypeError):  # saved by another algorithm
            continue
        return lambda obs: agent.predict(obs, deterministic=False)[0]
    return None


def render(results: dict, rows: int) -> str:
    lines = [
        "# How long DynaCallback fits its model",
        "",
        f"`python benchmarks/fit_budget.py` ({platform.machine()}, {torch.get_num_threads()} torch thread(s), torch "
        f"{torch.__version__}). Refits every {REFIT_EVERY} real rows up to {rows:,}, each continuing from the "
        "previous weights (except `auto-cold`), on a stream of real transitions whose actions move from random to a "
        "trained policy's; one-step error of the elite mean on 2,000 fresh real transitions of the same mix, in "
        "units of each output's real variance (observation dims averaged; reward alone). Lower is better.",
        "",
        "| env | rule | obs error @500 | @1000 | @final | reward error @final | gradient steps (all fits) "
        "| fit s (all fits) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for env_id, by_rule in results.items():
        for rule, r in by_rule.items():
            at = dict(zip(r["rows"], r["obs_error"]))
            lines.append(
                f"| {env_id} | {rule} | {at.get(500, float('nan')):.2e} | {at.get(1000, float('nan')):.2e} | "
                f"{r['obs_error'][-1]:.2e} | {r['reward_error'][-1]:.2e} | {sum(r['gradient_steps']):,} | "
                f"{sum(r['fit_s']):.0f} |"
            )
    return "\n".join(lines) + "\n" + NOTES


NOTES = """
Reading: on the first fits (250-500 real rows, where Dyna's early real steps are saved or lost) the schedule's
model is 11-250x more accurate than 50 epochs of 256-row batches on all four envs, within 1.3-1.7x of the
per-env tuned fit on CartPole and Acrobot at 62% and 22% of its fitting time. Continuing from the previous weights
(`auto`) matches fitting from scratch (`auto-cold`) at a third of the time (CartPole: 56 s against 170 s over 8
refits). Acrobot is where the tuned fit's 6x more gradient steps still buy accuracy (4.7e-4 against 1.1e-3 at
2,000 rows): each of `auto`'s refits used its whole 1,000-step budget there.

The reward error here is over all rows: InvertedPendulum's and Acrobot's rewards change only on the terminal step, so
it is large for every rule (DynaCallback's trust judges the reward on non-terminal rows, `FitResult.reward_error`).
On the first fits (225 training rows) an epoch of `fixed-50`'s 256-row batches is one gradient step: 50 in all.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(ENVS))
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    parser.add_argument("--rows", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("runs/calibration"))
    parser.add_argument("--out", type=Path, default=Path("docs/fit_budget.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    store = args.out.with_suffix(".json")
    results = json.loads(store.read_text()) if store.is_file() else {}
    for env_id in args.envs:
        policy = policy_for(env_id, args.cache)
        for rule in args.rules:
            started = time.time()
            results.setdefault(env_id, {})[rule] = run(env_id, rule, args.rows, policy, args.seed)
            r = results[env_id][rule]
            print(f"{env_id} {rule}: obs error {r['obs_error'][-1]:.4f}, reward {r['reward_error'][-1]:.4f}, "
                  f"{sum(r['fit_s']):.0f} s fitting ({time.time() - started:.0f} s)", flush=True)  # fmt: skip
            atomic_write_text(store, json.dumps(results, indent=1))
    atomic_write_text(args.out, render(results, args.rows))


if __name__ == "__main__":
    main()
