import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed (pip install -e '.[test]')")
def test_ruff_is_clean():
    completed = subprocess.run(["ruff", "check", "."], capture_output=True, text=True, cwd=ROOT)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def _logged_keys() -> set[str]:
    import re

    pattern = re.compile(r"\.record(?:_mean)?\(\s*\"([a-z_]+/[a-z_0-9/]+)\"")
    return {key for package in ("dream_envs", "sb3_plugins") for path in (ROOT / package).rglob("*.py")
            for key in pattern.findall(path.read_text())}  # fmt: skip


def test_every_logged_key_fits_sb3s_stdout_table():
    # SB3's HumanOutputFormat cuts keys past 36 characters ("gradient_steps_before_learning...")
    keys = _logged_keys()
    assert len(keys) > 40  # the pattern still finds them
    assert not [key for key in keys if len(key) > 36]


def test_rl_zoo_docs_name_every_key_the_callback_logs():
    page = (ROOT / "docs" / "rl_zoo.md").read_text()
    assert not [key for key in _logged_keys() if key.startswith("dyna/") and f"`{key}`" not in page]
