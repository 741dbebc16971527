"""``python -m sb3_plugins.benchmark`` is the ``dream-envs`` command."""

import sys

from sb3_plugins.benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main())
