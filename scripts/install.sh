#!/usr/bin/env bash
# Install dream-envs into the current Python, reusing any torch already there and never pulling a CUDA
# build of torch onto a CPU machine.
#
#   bash scripts/install.sh          # the library and its runtime dependencies
#   bash scripts/install.sh bench    # ... plus what `dream-envs bench` summarises with (rliable)
#   bash scripts/install.sh test     # ... plus the test tools (pytest, pytest-xdist, ruff) and what the tests
#                                    #     exercise (Ray, MuJoCo, rl-zoo3, sb3-contrib)
#   bash scripts/install.sh mujoco   # ... plus gymnasium's MuJoCo envs
#   bash scripts/install.sh zoo      # ... plus rl-zoo3 and sb3-contrib (docs/rl_zoo.md)
#
# GPU machines: install the torch build you want first (it is reused), or set TORCH_INDEX_URL to a PyTorch
# wheel index, e.g. TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 bash scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
extras="${1:-}"

if "$python" -c "import torch" 2>/dev/null; then
  echo "install.sh: reusing torch $("$python" -c 'import torch; print(torch.__version__)')"
elif [ -n "${TORCH_INDEX_URL:-}" ]; then
  "$python" -m pip install torch --index-url "$TORCH_INDEX_URL"
else
  # The CPU build: a local wheel or mirror when the machine has one, else PyTorch's CPU index.
  "$python" -m pip install "torch==2.13.0+cpu" \
    || "$python" -m pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
fi
# torch is now present, so the project's "torch>=2.3" requirement installs nothing more.
"$python" -m pip install -e ".${extras:+[$extras]}"
if ! command -v dream-envs >/dev/null 2>&1; then
  echo "install.sh: the dream-envs command was installed into $("$python" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'), which is not on PATH; add it, or run 'python3 -m sb3_plugins' instead" >&2
fi
