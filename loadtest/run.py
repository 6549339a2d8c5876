"""``python loadtest/run.py``: an alias of ``python -m loadtest`` (loadtest/cli.py), kept because
docs, scripts and users call it by this path."""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a file, Python puts loadtest/ first on the path, not the repository root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from loadtest.cli import main

    sys.exit(main())
