"""``python -m loadtest.bench engine|stream|client [flags]``: one benchmark per job.

- ``engine``: raw generate, our engines and ``transformers serve`` side by side (loadtest/bench/engine.py);
- ``stream``: one stream, in-process and served, across thread counts (loadtest/bench/stream.py);
- ``client``: how many streams one load-tester process times faithfully (loadtest/bench/client.py);
- ``grammar``: constrained decoding against free text, alone and batched (loadtest/bench/grammar.py).
"""

import importlib
import sys

BENCHMARKS = ("engine", "stream", "client", "grammar")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        print(__doc__, file=sys.stderr)
        return 2
    benchmark = importlib.import_module(f"loadtest.bench.{argv[0]}")
    return int(benchmark.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
