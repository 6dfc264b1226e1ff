"""`python -m train` runs unchanged under torchrun: 2 data-parallel processes on the CPU (gloo)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests.test_train import draw_classes, train_argv


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="no torchrun")
def test_torchrun_two_processes_train_and_save_once(tiny_checkpoints, tmp_path):
    data = draw_classes(tmp_path / "classes", {"train": 8, "validation": 3})
    run_dir = tmp_path / "run"
    command = [
        os.path.join(os.path.dirname(sys.executable), "torchrun"),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "train",
        *train_argv(
            model=tiny_checkpoints[("timm", "classification")], dataset=data, output_dir=run_dir, mode="full", epochs=1
        ),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    # A session of its own, so that a timeout ends torchrun's workers too instead of orphaning them.
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment, start_new_session=True
    )
    try:
        _, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    assert process.returncode == 0, stderr[-3000:]

    # 16 training images, 4 per process and step: 2 steps with 2 processes (a single process would take 4).
    state = json.loads((run_dir / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    results = json.loads((run_dir / "eval_results.json").read_text())
    assert results["num_examples"] == 6  # the gathered predictions hold every validation image once
