"""Options shared by the benchmarks that time the demo end to end (bench/demo_latency.py, bench/classify_e2e.py).

parser = argparse.ArgumentParser(description=..., parents=[timing_options()])
"""

from __future__ import annotations

import argparse

from hub.serving_options import add_precision_option


def at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def timing_options() -> argparse.ArgumentParser:
    """A parent parser with --images, --runs, --start-timeout and --prediction-precision (python -m demos's own)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--images", type=at_least_one, default=20, help="synthetic photos timed in each run")
    parser.add_argument("--runs", type=at_least_one, default=5, help="timing runs over the same photos")
    parser.add_argument(
        "--start-timeout", type=float, default=120, help="seconds each app started may take to its first answer"
    )
    add_precision_option(parser, "our predictions, as python -m demos --prediction-precision,")
    return parser
