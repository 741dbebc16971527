"""DreamVecEnv throughput against the machine's own batched-matmul rate, measured side by side in one run.

    python benchmarks/dream_throughput.py                   # CPU (1 torch thread), and CUDA when present
    python benchmarks/dream_throughput.py --devices cpu --threads 2
    python benchmarks/dream_throughput.py --devices cuda      # N up to 65,536; the CPU rows already there stay
    python benchmarks/dream_throughput.py --devices cpu --sizes 1 8 --seconds 0.1 --out /tmp/throughput  # a smoke run

For each N: dream env-steps per second of ``DreamVecEnv(Dream-CartPole-v0's model, n_envs=N)`` under random
actions; the matmul FLOPs one dream step needs (2 * E * N * sum(in * out) over the layers); and, in the same run,
the time torch.baddbmm takes for exactly those layer shapes. The ratio is the dream's FLOP rate over the pure
matmul rate. At N = 1 the real CartPole-v1 in SB3's DummyVecEnv is timed beside it. Results go to
docs/throughput.md and docs/throughput.json; rows of devices not measured in this run are kept from the JSON already
there, so a GPU machine adds its rows beside the CPU ones.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

import dream_envs  # noqa: F401
from dream_envs import EnsembleDynamics, pretrained_model_path
from dream_envs.device import resolve_device
from dream_envs.io import atomic_write_text
from sb3_plugins import DreamVecEnv

# N per device: a CPU saturates its matmul rate by N = 1,024; a GPU needs tens of thousands of rows to.
DEFAULT_SIZES = {"cpu": [1, 16, 256, 1024, 4096], "cuda": [1, 16, 256, 1024, 4096, 16384, 65536]}
WARMUP_CALLS = 3  # CUDA's first calls pay for kernel selection and the caching allocator's growth


def _timed(fn, min_seconds: float) -> float:
    """Seconds per call of ``fn``, repeated until ``min_seconds`` have passed (after a few warm-up calls)."""
    for _ in range(WARMUP_CALLS):
        fn()
    calls, started = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return elapsed / calls


def layer_shapes(model: EnsembleDynamics) -> list[tuple[int, int]]:
    return [(layer.weight.shape[1], layer.weight.shape[2]) for layer in (*model.hidden, model.head)]


def matmul_seconds(model: EnsembleDynamics, n: int, min_seconds: float) -> float:
    """Time of the forward pass's matmuls alone: one baddbmm per layer shape, on random data."""
    E, device = model.config.ensemble_size, model.device
    operands = [
        (torch.randn(E, 1, o, device=device), torch.randn(E, n, i, device=device), torch.randn(E, i, o, device=device))
        for i, o in layer_shapes(model)
    ]

    def run():
        for bias, x, w in operands:
            torch.baddbmm(bias, x, w)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return _timed(run, min_seconds)


def dream_seconds(model: EnsembleDynamics, n: int, min_seconds: float) -> float:
    venv = DreamVecEnv(model, n_envs=n, uncertainty_threshold="auto", max_episode_steps=500, seed=0)
    venv.reset()
    actions = np.random.default_rng(0).integers(0, 2, size=(64, n))
    step = iter(range(10**12))
    return _timed(lambda: venv.step(actions[next(step) % 64]), min_seconds)


def real_seconds(min_seconds: float) -> float:
    venv = DummyVecEnv([lambda: gym.make("CartPole-v1")])
    venv.seed(0)
    venv.reset()
    actions = np.random.default_rng(0).integers(0, 2, size=(64, 1))
    step = iter(range(10**12))
    return _timed(lambda: venv.step(actions[next(step) % 64]), min_seconds)


def _machine(device: torch.device, threads: int) -> dict:
    """What a device's rows were measured on."""
    info = {"command": shlex.join(["python", "benchmarks/dream_throughput.py", *sys.argv[1:]]),
            "torch": torch.__version__, "python": platform.python_version(), "torch_threads": threads,
            "processor": platform.processor() or platform.machine()}  # fmt: skip
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _earlier(path: Path, measured: set[str]) -> tuple[list[dict], dict[str, dict]]:
    """Rows and machines of the devices this run does not measure, from an earlier JSON (either format)."""
    if not path.exists():
        return [], {}
    earlier = json.loads(path.read_text())
    rows = [r for r in earlier.get("rows", []) if r["device"] not in measured]
    machines = earlier.get("machines")
    if machines is None:  # the first format: one machine for every row
        machines = {r["device"]: {k: earlier[k] for k in ("command", "torch", "python", "torch_threads", "processor")
                                  if k in earlier} for r in rows}  # fmt: skip
    return rows, {device: machines[device] for device in {r["device"] for r in rows} if device in machines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=int,
        help="N values for every device (default: "
        + "; ".join(f"{d} {' '.join(map(str, n))}" for d, n in DEFAULT_SIZES.items())
        + ")",
    )
    parser.add_argument(
        "--devices",
        nargs="+",
        default=["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"],
        help="cpu, cuda, cuda:1, ... (default: cpu, and cuda when present)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum timing window per measurement")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="folder of throughput.md/.json (default docs)")
    args = parser.parse_args()
    if args.sizes is not None and min(args.sizes) < 1:
        parser.error(f"--sizes must be positive integers, got {args.sizes}")
    if args.threads < 1 or not args.seconds > 0:
        parser.error("--threads must be >= 1 and --seconds > 0")
    try:
        devices = [resolve_device(d) for d in args.devices]
    except ValueError as error:
        parser.error(str(error))
    torch.set_num_threads(args.threads)
    rows, machines = _earlier(args.out / "throughput.json", {str(d) for d in devices})
    for device in devices:
        machines[str(device)] = _machine(device, args.threads)
        model = EnsembleDynamics.load(pretrained_model_path("CartPole-v1"), device=device)
        per_row_flops = 2 * model.config.ensemble_size * sum(i * o for i, o in layer_shapes(model))
        for n in args.sizes or DEFAULT_SIZES.get(device.type, DEFAULT_SIZES["cpu"]):
            dream = dream_seconds(model, n, args.seconds)
            matmul = matmul_seconds(model, n, args.seconds)
            row = {
                "device": str(device),
                "n_envs": n,
                "dream_steps_per_s": n / dream,
                "dream_gflops": per_row_flops * n / dream / 1e9,
                "matmul_gflops": per_row_flops * n / matmul / 1e9,
                "fraction_of_matmul_rate": matmul / dream,
            }
            if n == 1:
                real = real_seconds(args.seconds)
                row["real_cartpole_steps_per_s"] = 1 / real
                row["dream_step_vs_real_step"] = dream / real
            print(json.dumps(row), flush=True)
            rows.append(row)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    rows.sort(key=lambda r: (r["device"] != "cpu", r["device"], r["n_envs"]))
    record = {"model": "Dream-CartPole-v0 (E=7, hidden 128x3)", "machines": machines, "rows": rows}
    atomic_write_text(args.out / "throughput.json", json.dumps(record, indent=1))
    lines = [
        "# DreamVecEnv throughput",
        "",
        "Model: the shipped Dream-CartPole-v0 ensemble (7 members, 3 hidden layers of 128). The matmul rate is",
        "torch.baddbmm on exactly the dream's layer shapes, timed in the same run; the fraction is the dream's",
        "FLOP rate over it (1.0 = the dream step costs no more than its matmuls).",
        "",
    ]
    for device, machine in sorted(machines.items(), key=lambda item: (item[0] != "cpu", item[0])):
        where = machine.get("gpu") or machine.get("processor", "?")
        lines.append(f"- {device}: `{machine.get('command', '?')}` on {where}, {machine.get('torch_threads', '?')} "
                     f"torch thread(s), torch {machine.get('torch', '?')}")  # fmt: skip
    lines += [
        "",
        "| device | N envs | dream env-steps/s | dream GFLOP/s | matmul GFLOP/s | fraction of matmul rate |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['device']} | {r['n_envs']} | {r['dream_steps_per_s']:,.0f} | {r['dream_gflops']:.2f} | "
            f"{r['matmul_gflops']:.2f} | {r['fraction_of_matmul_rate']:.0%} |"
        )
    for r in rows:
        if "real_cartpole_steps_per_s" in r:
            lines.append(
                f"\nN = 1 on {r['device']}: real CartPole-v1 in DummyVecEnv {r['real_cartpole_steps_per_s']:,.0f} "
                f"steps/s; one dream step costs {r['dream_step_vs_real_step']:.1f}x a real step (goal: within 5x)."
            )
    atomic_write_text(args.out / "throughput.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
