"""Wall time of MPCAgent()'s first model fit and terminal-value fit, with no arguments, on one torch thread.

    python benchmarks/value_fit_time.py                        # Pendulum-v1, CartPole-v1; docs/value_fit_time.md
    python benchmarks/value_fit_time.py InvertedPendulum-v5    # prints only, unless --out is given

Each env: ``MPCAgent(env_id, seed=0, device="cpu").learn(201)``, whose 200 random real steps end in the first fit
of the model and then of the terminal value (:class:`~dream_envs.planning.ModelValueFunction`); the seconds are
the agent's own ``mpc/model_fit_seconds`` and ``mpc/value_fit_seconds``. The value fit's work does not depend on
the data's size (8 rounds of imagined rollouts and 1,000 updates), but on the actions tried per state: every
action of a Discrete space, ``action_samples`` (16) of a Box.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch
from stable_baselines3.common.logger import KVWriter, Logger

from dream_envs.agents import MPCAgent
from dream_envs.io import atomic_write_text

DEFAULT_ENVS = ["Pendulum-v1", "CartPole-v1"]


class _Last(KVWriter):
    def __init__(self):
        self.values = {}

    def write(self, key_values, key_excluded, step=0):
        self.values.update(key_values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("envs", nargs="*", default=DEFAULT_ENVS)
    parser.add_argument("--out", help="the page to write (default: docs/value_fit_time.md for the default envs)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()[0]  # what else the machine ran: these are wall times
    rows = []
    for env_id in args.envs:
        agent = MPCAgent(env_id, seed=0, device="cpu")
        last = _Last()
        agent.set_logger(Logger(None, [last]))
        started = time.perf_counter()
        agent.learn(201)
        agent.logger.dump(agent.num_timesteps)
        total, model, value = (time.perf_counter() - started, last.values["mpc/model_fit_seconds"],
                               last.values["mpc/value_fit_seconds"])  # fmt: skip
        print(f"{env_id}: learn(201) {total:.1f} s, model fit {model:.1f} s, value fit {value:.1f} s", flush=True)
        rows.append(f"| {env_id} | {agent.action_space} | {total:.0f} | {model:.1f} | {value:.0f} |")
    out = args.out or (Path(__file__).resolve().parents[1] / "docs" / "value_fit_time.md"
                       if args.envs == DEFAULT_ENVS else None)  # fmt: skip
    if out:
        named = "" if args.envs == DEFAULT_ENVS else " " + " ".join(args.envs)
        command = f"python benchmarks/value_fit_time.py{named}"
        lines = [
            "# MPCAgent(): wall time of the first model fit and terminal-value fit", "",
            f"`{command}` (Python {platform.python_version()}, torch {torch.__version__}, one torch thread, "
            f"{platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at the start): "
            "`MPCAgent(env_id, seed=0, device=\"cpu\").learn(201)`, whose 200 random real "
            "steps end in the first fit of the model and then of the terminal value; the agent's own "
            "`mpc/model_fit_seconds` and `mpc/value_fit_seconds`. Every refit pays the value fit again, whatever the "
            "data's size; a Box action space pays for its 16 sampled actions per state "
            "(`value_kwargs={\"action_samples\": ...}`).", "",
            "| env | action space | learn(201) s | model fit s | value fit s |", "|---|---|---|---|---|", *rows, "",
        ]  # fmt: skip
        atomic_write_text(out, "\n".join(lines))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
