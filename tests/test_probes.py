"""The diagnostic probes in benchmarks/ (goal_reward.py, dqn_values.py) print what they promise."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_probe_prints_one_line_per_probe():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "goal_reward.py"), "--seed", "0", "--steps", "96", "--every", "48",
         "--known"], capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [line["real_steps"] for line in lines] == [48, 96]
    last = lines[-1]
    assert len(last["actions"]) == len(last["values"]) == 4 and all(-1 <= a <= 1 for a in last["actions"])
    assert last["real_goal"] >= 0 and 0.0 <= last["imagined_goal_share"] <= 1.0 and 0.0 <= last["trust"] <= 1.0
    assert lines[0]["imagined"] == 0 and last["imagined"] > 0  # the first fit, at 64 real steps, branched


def test_dqn_values_probe_prints_one_line_per_probe():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "dqn_values.py"), "--algo", "dqn", "--steps", "256",
         "--every", "128"],  # rl-zoo DQN collects 256 real steps per rollout
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [line["real_steps"] for line in lines] == [128, 256]
    assert all(line["max_q_mean"] <= line["max_q_p95"] <= line["max_q_max"] for line in lines)
