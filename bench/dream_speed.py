"""Time the default class visualisation (demos.explaining.dream.dream) on a checkpoint at its input size.

    OMP_WAIT_POLICY=PASSIVE python -m bench.dream_speed --model efficientnet-lite0 --runs 3

The issue's bound is under 20 s a default run on 2 CPU cores. On a CPU shared with other busy
processes, OpenMP's default busy-waiting makes 2 torch threads many times slower than 1; the
PASSIVE wait policy (set before Python starts) avoids that.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from demos.explaining.dream import dream
from hub import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite0", help="hub id, folder or builtin alias")
    parser.add_argument("--target", default=None, help="class name (default: the checkpoint's first class)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    checkpoint = load_checkpoint(args.model)
    target = args.target or checkpoint.task.labels[0]
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    print(f"{args.model}: torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY={wait_policy}")
    for run in range(args.runs):
        began = time.perf_counter()
        result = dream(checkpoint, target, seed=run)
        seconds = time.perf_counter() - began
        load = os.getloadavg()[0]
        print(f"run {run}: {seconds:.1f} s, p({result.label}) = {result.probability:.3f}, load average {load:.1f}")


if __name__ == "__main__":
    main()
