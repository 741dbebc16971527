"""The benchmark CLI loses no work and leaves nothing behind: an unwritable --out is refused before training, one
failing run with --n-jobs 1 does not stop the others, pool workers die with their parent, and ``module:EnvId``
envs run in this process and in worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sb3_plugins.benchmark import ResultsDir, RunFailed, RunSpec, execute, plan_runs
from sb3_plugins.cli import main

ROOT = Path(__file__).resolve().parents[1]
# PPO with rollouts of 32 steps, so that a run of 64 real steps takes a second.
TINY_PPO = {"*": {"ppo": {"agent": {"n_steps": 32, "batch_size": 32, "n_epochs": 1}}}}
TINY_ARGS = ["--algos", "ppo", "--budget", "64", "--eval-every", "32", "--eval-episodes", "1", "--threshold", "1000",
             "--device", "cpu", "--no-progress"]  # fmt: skip

TINY_ENV = '''
import gymnasium as gym
import numpy as np
from gymnasium import spaces


class TinyEnv(gym.Env):
    """Ten steps; the reward is the action."""

    metadata = {"render_modes": ["rgb_array"]}  # SB3's make_vec_env asks for rgb_array frames
    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode

    def render(self):
        return np.zeros((8, 8, 3), np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.full(2, self.t / 10, np.float32), float(action), False, self.t >= 10, {}


gym.register("{env_name}", entry_point=TinyEnv, max_episode_steps=10)
'''


def tiny_env_module(folder: Path, module: str, env_name: str) -> str:
    """Write a module that registers ``env_name`` on import; its ``module:EnvId`` string."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(TINY_ENV.replace("{env_name}", env_name))
    return f"{module}:{env_name}"


def tiny_overrides(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(TINY_PPO))  # JSON is YAML
    return path


# ---------------------------------------------------------------- an unwritable --out


def refuses_before_training(monkeypatch, capsys, tmp_path: Path, out: Path) -> str:
    """Run the CLI with ``--out out``; assert that it exits 2 without training; its error line."""
    started = []
    monkeypatch.setattr("sb3_plugins.cli.execute", lambda *args, **kwargs: started.append(args))
    status = main(["bench", *TINY_ARGS, "--seeds", "1", "--n-jobs", "1", "--out", str(out),
                   "--hyperparams", str(tiny_overrides(tmp_path))])  # fmt: skip
    assert status == 2 and not started
    return capsys.readouterr().err


def test_an_out_below_a_regular_file_is_refused_before_any_training(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    err = refuses_before_training(monkeypatch, capsys, tmp_path, blocker / "deeper" / "out")
    assert f"results dir '{blocker / 'deeper' / 'out'}' cannot be written" in err
    assert f"'{blocker}' is a file, not a folder" in err and "choose another --out" in err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders; a POSIX user cannot")  # fmt: skip
def test_a_read_only_out_is_refused_before_any_training(tmp_path, monkeypatch, capsys):
    out = tmp_path / "read-only"
    out.mkdir()
    out.chmod(0o555)
    try:
        err = refuses_before_training(monkeypatch, capsys, tmp_path, out)
    finally:
        out.chmod(0o755)
    assert f"results dir '{out}' cannot be written (Permission denied" in err


def test_a_folder_the_system_refuses_to_write_is_refused_before_any_training(tmp_path, monkeypatch, capsys):
    """What a read-only folder does for a user who is not root (a full disk does the same): the probe file fails."""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(kwargs.get("dir")))

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    err = refuses_before_training(monkeypatch, capsys, tmp_path, tmp_path / "out")
    assert f"results dir '{tmp_path / 'out'}' cannot be written (Permission denied)" in err


def test_the_write_probe_leaves_the_folder_empty(tmp_path):
    results = ResultsDir(tmp_path / "new" / "out")
    results.check_writable()
    assert results.path.is_dir() and list(results.path.iterdir()) == []


# ---------------------------------------------------------------- one failing run among several


def failing_and_good_specs() -> list[RunSpec]:
    good = RunSpec("CartPole-v1", "ppo", 0, 64, 475.0, 32, 1, {"n_envs": 1, "agent": TINY_PPO["*"]["ppo"]["agent"]},
                   "cpu")  # fmt: skip
    bad = RunSpec("CartPole-v1", "ppo", 1, 64, 475.0, 32, 1, {"n_envs": 1, "agent": {"n_steps": -1}}, "cpu")
    return [bad, good]  # the failure first: the run after it must still execute


def test_with_one_job_a_failing_run_does_not_stop_the_others():
    records = []
    with pytest.raises(RunFailed, match="1 run\\(s\\) failed .*\nCartPole-v1 ppo seed 1: ") as caught:
        execute(failing_and_good_specs(), records.append, n_jobs=1)
    assert [r["seed"] for r in records] == [0]
    assert "seed 0" not in str(caught.value)


def test_the_cli_with_one_job_records_the_other_runs_and_exits_1(tmp_path, monkeypatch, capsys):
    import sb3_plugins.benchmark.backends as backends

    real_run_one = backends.run_one

    def run_one(spec, progress=None):
        if spec.seed == 0:
            raise MemoryError("seed 0 ran out of memory")
        return real_run_one(spec, progress=progress)

    monkeypatch.setattr(backends, "run_one", run_one)
    out = tmp_path / "out"
    status = main(["bench", *TINY_ARGS, "--seeds", "3", "--n-jobs", "1", "--out", str(out),
                   "--hyperparams", str(tiny_overrides(tmp_path))])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1
    assert "1 run(s) failed (the others are recorded)" in err and "CartPole-v1 ppo seed 0: MemoryError" in err
    assert sorted(r["seed"] for r in ResultsDir(out).records()) == [1, 2]
    assert (out / "summary.md").exists()


# ---------------------------------------------------------------- pool workers end with their parent

PARENT = """
import multiprocessing, sys

from sb3_plugins.benchmark import RunSpec, execute, hyperparams_for

def report(key, steps):
    # Both runs train: tell the test the workers' pids, once per run.
    if key not in seen:
        seen.add(key)
        print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)

if __name__ == "__main__":
    seen = set()
    # Runs that would train for a minute or more: only the parent's death can end them within the test. Progress
    # comes every budget / 100 real steps.
    specs = [RunSpec("CartPole-v1", "ppo", seed, 50_000, None, 50_000, 1, hyperparams_for("CartPole-v1", "ppo"),
                     "cpu") for seed in (0, 1)]
    execute(specs, print, report, n_jobs=2)
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by whoever adopted it, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_pool_workers_exit_when_the_main_process_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    workers: list[int] = []
    try:
        for _ in range(2):  # a line when each run has trained its first steps
            line = parent.stdout.readline()
            assert line, f"the parent ended early with status {parent.wait()}"
            workers = [int(pid) for pid in line.split()]
        assert len(workers) == 2 and all(alive(pid) for pid in workers)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if alive(pid)], "pool workers outlived their killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in workers:  # leave nothing running if the check failed
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- module:EnvId


def test_a_module_env_id_imports_its_module_when_planning(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    env_id = tiny_env_module(tmp_path, "tiny_env_for_planning", "TinyPlanning-v0")
    specs = plan_runs(env_id, ["ppo"], seeds=1, budget=64, eval_every=32, eval_episodes=1, device="cpu",
                      overrides=TINY_PPO)  # fmt: skip
    assert [s.env_id for s in specs] == [env_id]


def test_a_module_that_fails_to_import_is_named(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "broken_env_module.py").write_text("raise RuntimeError('no licence for this simulator')\n")
    with pytest.raises(ValueError, match="--env 'broken_env_module:Env-v0': importing 'broken_env_module' raised "
                       "RuntimeError: no licence for this simulator"):  # fmt: skip
        plan_runs("broken_env_module:Env-v0", ["ppo"], seeds=1, device="cpu")


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_the_cli_runs_a_module_env_id_in_this_process_and_in_workers(tmp_path, n_jobs):
    modules = tmp_path / "modules"
    env_id = tiny_env_module(modules, f"tiny_env_jobs_{n_jobs}", "TinyBench-v0")
    out = tmp_path / "out"
    # Two seeds, so that --n-jobs 2 runs them in a pool of worker processes, which must import the module too;
    # the module is on PYTHONPATH only, as a user's would be, never imported by the test itself.
    completed = subprocess.run(
        [sys.executable, "-m", "sb3_plugins", "bench", "--env", env_id, *TINY_ARGS, "--seeds", "2", "--n-jobs",
         str(n_jobs), "--out", str(out), "--hyperparams", str(tiny_overrides(tmp_path))],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(modules), os.environ.get("PYTHONPATH")]))},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert f"{n_jobs} at a time" in " ".join(completed.stdout.split())  # rich wraps lines at 80 columns
    records = ResultsDir(out).records()
    assert sorted((r["env"], r["seed"]) for r in records) == [(env_id, 0), (env_id, 1)]
    assert all(r["real_steps"] == 64 for r in records)
