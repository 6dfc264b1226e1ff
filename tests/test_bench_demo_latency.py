"""bench.demo_latency: --runs repeats the timing on the same models; the headline gives every model's precision
and ratio."""

import re
import statistics

import pytest

from bench import demo_latency


def test_runs_print_each_ratio_and_the_headline_their_precision_median_and_minimum(tiny_checkpoints, capsys):
    demo_latency.main(
        [
            "--food-model",
            str(tiny_checkpoints[("timm", "classification")]),
            "--boneage-model",
            str(tiny_checkpoints[("timm", "regression")]),
            "--vit-model",
            str(tiny_checkpoints[("vit", "classification")]),
            "--images",
            "2",
            "--runs",
            "3",
            "--skip-endpoints",
            "--prediction-precision",
            "int8",
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    runs = [line for line in lines if line.startswith("run ")]
    assert [line.split(":")[0] for line in runs] == ["run 1", "run 2", "run 3"]
    models = ("food", "vit-b16", "boneage")
    ratios = {m: [float(re.search(rf"{m} ([\d.]+)x", line).group(1)) for line in runs] for m in models}
    (peak,) = [float(m) for line in lines for m in re.findall(r"^fp32 matmul peak .*: ([\d.]+) GFLOP/s$", line)]
    for model in models:  # the bound: the model's FLOPs at that peak, against the pipeline's fastest run
        gflop, floor_ms, pipeline_ms, most = map(
            float,
            re.search(
                rf"^fp32 bound {model}: ([\d.e-]+) GFLOP an image at that peak >= ([\d.e-]+) ms, against the "
                r"pipeline's ([\d.]+) ms: no fp32 server beats it by more than ([\d.]+)x$",
                "\n".join(lines),
                re.M,
            ).groups(),
        )
        # The GFLOP, the peak and the floor are printed to 3 significant digits (at most 0.5% off each), the pipeline's
        # time to 3 decimals (a tiny model's 1 ms at one decimal was up to 5% off and failed this once).
        assert gflop > 0 and floor_ms == pytest.approx(1000 * gflop / peak, rel=0.016)
        assert most == pytest.approx(pipeline_ms / floor_ms, rel=0.02)
    headline = lines[-1]
    assert headline.startswith("speed-up over pipeline, median of 3 runs: ")
    for model, values in ratios.items():
        median, minimum = re.search(rf"{model} int8 ([\d.]+)x \(min ([\d.]+)x\)", headline).groups()
        assert float(median) == pytest.approx(statistics.median(values), abs=0.011)
        assert float(minimum) == pytest.approx(min(values), abs=0.011)


@pytest.mark.parametrize("option", ["--runs", "--images"])
def test_a_count_below_one_is_refused(option):
    with pytest.raises(SystemExit):
        demo_latency.parse_args([option, "0"])


def test_fp32_is_the_default_and_an_unknown_precision_is_refused():
    assert demo_latency.parse_args([]).prediction_precision == "fp32"
    with pytest.raises(SystemExit):
        demo_latency.parse_args(["--prediction-precision", "fp16"])
