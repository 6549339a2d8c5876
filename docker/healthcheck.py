"""Docker HEALTHCHECK: exit 0 when /health answers 200 on this container's $PORT.

Python rather than curl: the image has Python already, and this reads PORT as the server does.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError):
        return 1  # 503 (model failed to load) arrives as HTTPError, a URLError


if __name__ == "__main__":
    sys.exit(main())
