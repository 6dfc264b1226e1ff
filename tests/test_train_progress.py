"""`python -m train --progress-jsonl`: the stream a program follows a run by; and training_config.json as the typed
record (hub.contract.TrainingRecord) that evaluation falls back on."""

from __future__ import annotations

import json

from hub.contract import Recipe, TaskKind, TrainingMode, TrainingRecord
from tests.test_train import ages_dir, classes_dir, read_json, train_argv  # noqa: F401 (fixtures)
from train.__main__ import main
from train.evaluate import main as evaluate


def read_events(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_two_stage_run_streams_both_stages_and_ends_with_its_folder(tiny_checkpoints, classes_dir, tmp_path):
    run_dir, stream = tmp_path / "run", tmp_path / "progress.jsonl"
    argv = train_argv(
        model=tiny_checkpoints[("timm", "classification")],
        dataset=classes_dir,
        output_dir=run_dir,
        mode="two-stage",
        head_epochs=2,
        epochs=1,
        ema_decay=0.9,
        progress_jsonl=stream,
    )
    assert main(argv) == 0

    events = read_events(stream)
    starts = [event for event in events if event["event"] == "start"]
    assert [event["stage"] for event in starts] == ["head", "whole network"]
    assert all(event["total_steps"] > 0 and event["epochs"] > 0 for event in starts)
    logs = [event for event in events if event["event"] == "log"]
    assert logs and all({"step", "epoch", "loss", "learning_rate"} <= event.keys() for event in logs)
    evals = [event for event in events if event["event"] == "eval"]
    assert len([e for e in evals if e["stage"] == "head"]) == 2, "one evaluation an epoch"
    assert all(0.0 <= event["accuracy"] <= 1.0 and {"step", "epoch"} <= event.keys() for event in evals)
    assert any(event.get("weights") == "ema" for event in evals), "the EMA's evaluation is streamed too"
    assert events[-1] == {"event": "end", "run_dir": str(run_dir)}

    # training_config.json is the typed record, and writes back as it was read
    record = TrainingRecord.read(run_dir)
    assert (record.task, record.mode, record.head_epochs) == (TaskKind.CLASSIFICATION, TrainingMode.TWO_STAGE, 2.0)
    assert isinstance(record.recipe, Recipe) and record.recipe.ema_decay == 0.9
    assert record.to_json() == read_json(run_dir / "training_config.json")
    assert TrainingRecord.from_json(record.to_json()) == record


def test_a_feature_extraction_run_streams_its_metric_and_end(tiny_checkpoints, ages_dir, tmp_path, capsys):
    run_dir, stream = tmp_path / "run", tmp_path / "progress.jsonl"
    argv = train_argv(
        model=tiny_checkpoints[("vit", "regression")],
        dataset=ages_dir,
        output_dir=run_dir,
        target_column="boneage",
        mode="feature-extraction",
        head_epochs=1,
        progress_jsonl=stream,
    )
    assert main(argv) == 0
    events = read_events(stream)
    assert [event["event"] for event in events if event["event"] != "log"] == ["start", "eval", "end"]
    assert events[-2]["mae"] >= 0 and events[-1]["run_dir"] == str(run_dir)

    # A checkpoint from before config.json named its target column: evaluation reads it from the record.
    config = read_json(run_dir / "config.json")
    del config["target_column"]
    (run_dir / "config.json").write_text(json.dumps(config))
    assert evaluate([str(run_dir), "--dataset", str(ages_dir), "--split", "validation", "--workers", "0"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("mae=")
