"""The command lines read as timm's and transformers' do: `--help` names options kebab-case, as the README writes them,
states each default once, gives examples, and answers before torch, transformers or gradio are imported."""

import dataclasses
import json
import subprocess
import sys

import pytest

from train.__main__ import parse
from train.arguments import TrainArguments

COMMANDS = ["train", "train.evaluate", "demos", "demos.predict", "hub.space", "hub"]
HEAVY = ("torch", "transformers", "gradio", "datasets", "timm")
# Runs a command's `--help` as `python -m` does, then prints which heavy packages that imported.
HELP_THEN_HEAVY_MODULES = """
import runpy, sys
sys.argv = ["{module}", "--help"]
try:
    runpy.run_module("{module}", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
print("HEAVY:" + ",".join(name for name in {heavy!r} if name in sys.modules))
"""


def help_text(module: str) -> str:
    done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("module", COMMANDS)
def test_help_imports_no_heavy_package(module):
    """What made every --help take 10-13 s: torch, transformers and gradio imported before argparse ran."""
    code = HELP_THEN_HEAVY_MODULES.format(module=module, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "usage: python -m " + module in done.stdout, done.stderr
    assert done.stdout.splitlines()[-1] == "HEAVY:", done.stdout.splitlines()[-1]


def test_train_help_shows_the_readme_spelling_each_default_once_and_examples():
    text = help_text("train")
    assert text.startswith("usage: python -m train --dataset DATASET --output-dir OUTPUT_DIR [OPTIONS]")
    assert "__main__.py" not in text
    assert "--output-dir OUTPUT_DIR" in text and "--backbone-learning-rate" in text
    assert "--output_dir" not in text and "--no_freeze_batchnorm" not in text
    assert "(default: label). (default" not in text and "(default: None)" not in text
    # The no-flag says what it does, not what the option it turns off does.
    no_freeze = text[text.index("--no-freeze-batchnorm") : text.index("--weight-decay")]
    assert "Let BatchNorm layers adapt" in no_freeze and "Keep BatchNorm" not in no_freeze
    assert "--freeze-batchnorm " not in text.replace("--no-freeze-batchnorm", "")
    # a default of 0.0 or 1.0 is stated too, though it equals False or True, whose flags state none
    for option, default in (("--mixup MIXUP", "0.0"), ("--distill-temperature", "1.0")):
        entry = " ".join(text[text.index(option) :].split("\n  --")[0].split())
        assert entry.endswith(f"(default: {default})"), entry
    examples = text[text.index("examples:") :]
    first = "python -m train --model efficientnet-lite2 --dataset ../shared/data/food10 --output-dir runs/food10-192"
    assert f"{first} \\" in examples
    assert "--no-freeze-batchnorm --ema-decay 0.998 --robustness-check" in examples


def test_every_train_option_has_help_and_its_default_at_most_once():
    text = help_text("train")
    options = text[text.index("options:") : text.index("examples:")]
    entries = options.split("\n  --")[1:]
    # every field of TrainArguments once (the true-by-default ones by their --no- flag)
    assert len(entries) == len(dataclasses.fields(TrainArguments))
    for entry in entries:
        name, _, described = entry.partition(" ")
        assert described.strip(), f"--{name} has no help"
        assert " ".join(described.split()).count("(default") <= 1, entry


def test_both_spellings_parse_and_no_flags_turn_off():
    snake = parse(["--dataset", "d", "--output_dir", "o", "--no_freeze_batchnorm", "--learning_rate", "0.01"])
    kebab = parse(["--dataset", "d", "--output-dir", "o", "--no-freeze-batchnorm", "--learning-rate", "0.01"])
    assert snake == kebab
    assert kebab.freeze_batchnorm is False and kebab.learning_rate == 0.01 and kebab.calibrate is True
    assert parse(["--dataset", "d", "--output-dir", "o", "--no-calibrate", "--image-size", "128"]) == TrainArguments(
        dataset="d", output_dir="o", calibrate=False, image_size=128
    )


def test_a_json_config_holds_the_arguments_and_an_unknown_name_is_a_usage_error(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"dataset": "d", "output_dir": "o", "freeze_batchnorm": False, "epochs": 2}))
    assert parse([str(config)]) == TrainArguments(dataset="d", output_dir="o", freeze_batchnorm=False, epochs=2)
    config.write_text(json.dumps({"dataset": "d", "output_dir": "o", "epoch": 2}))
    with pytest.raises(SystemExit):
        parse([str(config)])
    assert "unknown arguments: epoch" in capsys.readouterr().err


def test_the_cuda_home_note_is_dropped_and_other_warnings_of_its_logger_show():
    """torch.compile imports torch.utils.cpp_extension, which warns 'No CUDA runtime is found' on any machine with a
    CUDA toolkit and no GPU: noise to a CPU user at the demo's start-up."""
    code = (
        "import logging, hub\n"
        "log = logging.getLogger('torch.utils.cpp_extension')\n"
        "log.warning(\"No CUDA runtime is found, using CUDA_HOME='/usr/local'\")\n"
        "log.warning('a real problem')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "No CUDA runtime" not in done.stderr and "a real problem" in done.stderr
