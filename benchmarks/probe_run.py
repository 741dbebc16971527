"""What the diagnostic probes share (goal_reward.py, dqn_values.py): their common options, and one benchmark row
trained with a probe callback beside its DynaCallback."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from sb3_plugins import DynaCallback
from sb3_plugins.benchmark import RunSpec, hyperparams_for
from sb3_plugins.benchmark.runner import build_agent


def probe_parser(doc: str, seed: int) -> argparse.ArgumentParser:
    """A parser with the probes' shared options: ``--seed``, ``--steps`` and ``--every``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--steps", type=int, default=3000, help="real steps to train for")
    parser.add_argument("--every", type=int, default=250, help="real steps between probes")
    return parser


def train_with_probe(
    env_id: str, algo: str, args: argparse.Namespace, overrides: dict[str, Any],
    make_probe: Callable[[DynaCallback | None], BaseCallback],
) -> None:  # fmt: skip
    """Train the benchmark's ``env_id``/``algo`` row (its settings, with ``overrides``) for ``args.steps`` real steps
    on one torch thread, as the benchmark runs them (two threads on a busy core crawl), with the probe that
    ``make_probe`` builds from the run's DynaCallback (None for a stock row) called before it at every step."""
    torch.set_num_threads(1)
    spec = RunSpec(env_id, algo, seed=args.seed, budget=args.steps, threshold=None, eval_every=args.every,
                   hyperparams=hyperparams_for(env_id, algo, overrides), device="cpu")  # fmt: skip
    agent, dyna = build_agent(spec)
    probe = make_probe(dyna)
    agent.learn(args.steps, callback=CallbackList([probe, dyna]) if dyna else probe)
