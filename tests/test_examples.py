"""Every example runs, as a user would run it (a subprocess), on a tiny budget."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "train_in_dream.py": (["--steps", "256", "--eval-episodes", "2", "--mode", "terminate"], "'terminate' cutoff"),
    "neural_dyna.py": (["--budget", "250", "--eval-every", "250", "--eval-episodes", "1"], "dqn+dyna: "),
}


def test_every_example_is_covered():
    assert {p.name for p in (ROOT / "examples").glob("*.py")} == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name):
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *EXAMPLES[name][0]],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr
    assert EXAMPLES[name][1] in completed.stdout, completed.stdout


def test_example_rejects_bad_options():
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_in_dream.py"), "--threshold", "often"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert completed.returncode == 2 and "--threshold must be" in completed.stderr
