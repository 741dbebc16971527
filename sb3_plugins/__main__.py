"""``python -m sb3_plugins`` is the ``dream-envs`` command (for machines where its script is not on PATH)."""

import sys

from sb3_plugins.cli import main

if __name__ == "__main__":
    sys.exit(main())
