"""The Train tab's jobs (demos/training/jobs.py): a real `python -m train` run as a process of its own, its progress
stream, Cancel ending its process group, one job at a time with the others' places in line, crashes and the cap."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demos.training.choices import MODES, TrainOptions, command_line
from demos.training.jobs import JobRefused, JobRunner, JobState
from demos.training.progress import ProgressReader, progress_of
from hub.contract import TrainingMode
from tests.tiny_checkpoints import build_tiny_checkpoint

# Small batches, no data-loading processes, a loss logged every step: tiny runs on this shared 2-core machine.
TINY = ("--batch-size", "4", "--eval-batch-size", "8", "--dataloader-workers", "0", "--logging-steps", "1")
COLOURS = {"red": (210, 40, 40), "blue": (40, 40, 210), "green": (40, 190, 40)}


def draw_images(folder: Path, per_class: int, classes=("red", "blue")) -> dict[str, list[Path]]:
    """Noisy 32 px colour squares, `per_class` of each colour, as files: {class: paths}."""
    rng = np.random.default_rng(0)
    drawn = {}
    for name in classes:
        (folder / name).mkdir(parents=True, exist_ok=True)
        drawn[name] = []
        for i in range(per_class):
            pixels = np.clip(rng.normal(COLOURS[name], 30, size=(32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")
            drawn[name].append(folder / name / f"{i}.png")
    return drawn


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("base") / "timm", "timm", "classification")


def job_folder(runner: JobRunner, session: str, images: Path) -> Path:
    """A job folder whose data/ is an imagefolder of `images` (class folders: everything trains and validates)."""
    folder = runner.new_folder(session)
    for split in ("train", "validation"):
        shutil.copytree(images, folder / "data" / split)  # datasets' imagefolder does not follow linked folders
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    draw_images(folder, 4)
    return folder


def argv(base: Path, mode: TrainingMode, **options) -> list[str]:
    choices = TrainOptions(base_model=str(base), mode=mode, extra=TINY, **options)
    return choices.argv(dataset="data", output_dir="run")


def wait_for(condition, timeout: float = 120.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"waited {timeout} s for {what}"
        time.sleep(0.2)


def group_is_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_choices_default_to_the_commands_defaults_and_name_each_stages_options():
    from train.arguments import TrainArguments  # tests may import train; demos/ may not

    defaults = {f.name: f.default for f in dataclasses.fields(TrainArguments)}
    options = TrainOptions()
    for name in ("epochs", "head_epochs", "learning_rate", "head_learning_rate"):
        assert getattr(options, name) == defaults[name], name
    assert options.base_model == defaults["model"] and defaults["augment"] == "random-crop"
    assert set(MODES.values()) == set(TrainingMode)
    head_only = TrainOptions(mode=MODES["train only a new head (fast)"], augment=False).argv(
        dataset="d", output_dir="r"
    )
    assert "--head-epochs" in head_only and "--epochs" not in head_only and head_only[-2:] == ["--augment", "none"]
    full = TrainOptions(mode=MODES["fine-tune everything"], image_size=160).argv(dataset="d", output_dir="r")
    assert "--head-epochs" not in full and full[full.index("--epochs") + 1] == "3" and "--image-size" in full
    assert command_line(["--target-column", "bone age"]) == "python -m train --target-column 'bone age'"


def test_a_tiny_run_streams_its_progress_and_saves_a_checkpoint(tiny_base, images, tmp_path):
    runner = JobRunner(tmp_path / "jobs")
    job = runner.submit("alice", job_folder(runner, "alice", images), argv(tiny_base, TrainingMode.TWO_STAGE,
                        head_epochs=2, epochs=1), stages=2)  # fmt: skip
    reader = ProgressReader(job)
    assert job.finished.wait(180), "the tiny run ended"

    assert job.state is JobState.DONE, job.last_lines()
    assert (job.run_dir / "model.safetensors").is_file() and (job.run_dir / "eval_results.json").is_file()
    kinds = [event["event"] for event in job.events()]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("start") == 2 and "log" in kinds
    progress = reader.read()
    assert progress.ended and progress.fraction == 1.0 and progress.stage == 2
    assert progress.curves.metric_name == "accuracy" and len(progress.curves.metric) == 3  # 2 head epochs + 1
    assert [epoch for epoch, _ in progress.curves.metric] == [1.0, 2.0, 3.0]  # the stages laid end to end
    assert job.command.startswith(f"python -m train --model {tiny_base} --dataset data --output-dir run --mode two")


def test_progress_gives_the_stage_the_fraction_and_an_eta():
    events = [
        {"event": "start", "stage": "head", "total_steps": 10, "epochs": 2.0},
        {"event": "log", "stage": "head", "step": 4, "epoch": 0.8, "loss": 0.7, "learning_rate": 0.003},
    ]
    progress = progress_of(events, [100.0, 104.0], stages=2, now=108.0)
    assert progress.stage == 1 and progress.fraction == pytest.approx(0.2)
    assert progress.eta_s == pytest.approx(8 * 6 / 4)  # 4 steps in 8 s since the stage started: 6 more take 12 s
    assert "stage 1 of 2, the new head: step 4 of 10, about 12 s left" in progress.describe()


def test_cancel_ends_the_process_group_and_the_next_job_in_line_starts(tiny_base, images, tmp_path):
    runner = JobRunner(tmp_path / "jobs")
    long_run = argv(tiny_base, TrainingMode.FULL, epochs=500)
    first = runner.submit("alice", job_folder(runner, "alice", images), long_run)
    second = runner.submit("bob", job_folder(runner, "bob", images), long_run)
    third = runner.submit("carol", job_folder(runner, "carol", images), long_run)
    assert (first.state, runner.position(first)) == (JobState.RUNNING, 0)
    assert (second.state, runner.position(second), runner.position(third)) == (JobState.WAITING, 1, 2)
    with pytest.raises(JobRefused, match="already running or waiting"):
        runner.submit("bob", job_folder(runner, "bob", images), long_run)
    runner.cancel(third)  # out of the line, never started
    assert third.state is JobState.CANCELLED and third.process is None

    wait_for(lambda: any(e["event"] == "log" for e in first.events()), what="the first training step")
    pgid = first.process.pid
    runner.cancel(first)
    assert first.state is JobState.CANCELLED and group_is_gone(pgid)
    wait_for(lambda: second.state is JobState.RUNNING, timeout=10, what="the next job to start")
    assert runner.position(second) == 0
    runner.cancel(second)
    assert group_is_gone(second.process.pid) and second.state is JobState.CANCELLED


def test_a_crash_is_a_failed_job_with_its_last_lines_and_the_run_time_is_capped(
    tiny_base, images, tmp_path, monkeypatch, capsys
):
    capped = JobRunner(tmp_path / "capped", max_run_s=1)
    slow = capped.submit("bob", job_folder(capped, "bob", images), argv(tiny_base, TrainingMode.FULL, epochs=500))
    # The command fails on its arguments, before torch loads (a failure after the imports took 10-20 s more here).
    runner = JobRunner(tmp_path / "jobs")
    broken = runner.submit("alice", runner.new_folder("alice"), [*argv(tiny_base, TrainingMode.FULL), "--epochs", "x"])
    assert broken.finished.wait(120) and slow.finished.wait(30)
    assert broken.state is JobState.FAILED
    assert broken.last_lines()[-1] == "python -m train: error: argument --epochs: invalid float value: 'x'"
    assert slow.state is JobState.TIMED_OUT and group_is_gone(slow.process.pid)

    # What a run without its data/ prints last, so what the tab shows for it: `python -m train`'s own main, called
    # here in this process (the job above shows that whatever the command prints last is the job's last line).
    from train.__main__ import main

    monkeypatch.chdir(runner.new_folder("carol"))  # no data/
    assert main(argv(tiny_base, TrainingMode.FULL)) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: Could not load the dataset 'data'")


def test_sessions_folders_are_deleted_after_the_stated_time_unless_a_job_runs(tmp_path):
    runner = JobRunner(tmp_path / "jobs", keep_s=3600)
    old, recent = runner.new_folder("old"), runner.new_folder("recent")
    an_hour_ago = time.time() - 3601
    for path in (old, old.parent):
        os.utime(path, (an_hour_ago, an_hour_ago))
    runner.sweep()
    assert not old.parent.exists() and recent.is_dir()
