"""bench.train_throughput runs both pipelines end to end on a tiny checkpoint and prints its figures."""

import re

import pytest

from bench import train_options, train_throughput
from tests.test_train import draw_classes


def test_both_pipelines_train_and_the_ratio_is_the_last_line(tiny_checkpoints, capsys):
    folder = tiny_checkpoints[("vit", "classification")]
    train_throughput.main(
        [
            "--models",
            str(folder),
            "--images",
            "12",
            "--steps",
            "3",
            "--warmup-steps",
            "1",
            "--batch-size",
            "4",
            "--train-args=--dataloader-workers 0",
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    model_line = next(line for line in lines if line.startswith(folder.name))
    speeds = [float(s) for s in re.findall(r"(?:ours|baseline) +([\d.]+) img/s", model_line)]
    assert len(speeds) == 2 and all(speed > 0 for speed in speeds), model_line
    ratio = float(re.search(r"ours/baseline +([\d.]+)x", model_line).group(1))
    assert abs(ratio - speeds[0] / speeds[1]) < 0.01 + 0.01 * ratio  # the printed ratio is of the printed speeds
    headline = rf"training speed-up over run_image_classification\.py, ours/baseline images/s: {folder.name} [\d.]+x"
    assert re.fullmatch(headline, lines[-1]), lines[-1]


@pytest.mark.parametrize("comparison", sorted(train_options.COMPARISONS))
def test_option_bench_times_both_variants_and_prints_their_ratio_last(tiny_checkpoints, tmp_path, capsys, comparison):
    dataset = draw_classes(tmp_path / "classes", {"train": 6, "validation": 1})
    train_options.main(
        [
            "--compare",
            comparison,
            "--dataset",
            str(dataset),
            "--model",
            str(tiny_checkpoints[("timm", "classification")]),
            "--batch-size",
            "4",
            "--steps",
            "3",
            "--warmup-steps",
            "1",
            "--train-args=--dataloader-workers 0 --image-size 32",
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    baseline, variant = train_options.COMPARISONS[comparison]
    speeds = {
        name: float(re.search(rf"^{name} +([\d.]+) img/s", "\n".join(lines), re.M).group(1))
        for name in (baseline, variant)
    }
    assert all(speed > 0 for speed in speeds.values())
    ratio = float(re.fullmatch(rf"{variant} / {baseline}: ([\d.]+)x", lines[-1]).group(1))
    assert abs(ratio - speeds[variant] / speeds[baseline]) < 0.01 + 0.01 * ratio
