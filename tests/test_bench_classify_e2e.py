"""bench.classify_e2e's options, and its baseline app: a plain gr.Interface around pipeline answering top-5 labels."""

import pytest

from bench import classify_e2e, pipeline_app
from tests.tiny_checkpoints import LABELS


def test_the_pipeline_app_answers_label_probabilities(tiny_checkpoints, photo):
    app = pipeline_app.build_app(str(tiny_checkpoints[("vit", "classification")]))
    answer = app.fn(photo)
    assert set(answer) == set(LABELS)  # the tiny checkpoint has 3 classes, fewer than the top 5 asked for
    assert sum(answer.values()) == pytest.approx(1, abs=1e-4)


def test_runs_images_and_precision_parse_and_a_count_below_one_is_refused():
    args = classify_e2e.parse_args(
        ["--runs", "3", "--images", "4", "--model", "food10", "--prediction-precision", "int8"]
    )
    assert (args.runs, args.images, args.model, args.prediction_precision) == (3, 4, "food10", "int8")
    assert classify_e2e.parse_args([]).prediction_precision == "fp32"
    for option in ("--runs", "--images"):
        with pytest.raises(SystemExit):
            classify_e2e.parse_args([option, "0"])
