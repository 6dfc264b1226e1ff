"""Issue 19: `python -m demos --prediction-precision {fp32,bf16,int8}`: what predictions compute in.

OMP_WAIT_POLICY=PASSIVE python -m pytest -q tests/test_serving_precision.py
"""

from __future__ import annotations

import pytest
import torch

import demos.__main__ as demos_main
from demos import app as demo_app
from demos import models as demo_models
from demos.predict import batch_logits
from demos.serving import inference
from demos.serving import precision as serving_precision

REDUCED = ("bf16", "int8")


@pytest.fixture(autouse=True)
def _bf16_as_if_native(monkeypatch):
    """bf16 is refused on CPUs without it; these tests check what it computes, so they run on any CPU (emulated)."""
    monkeypatch.setattr(serving_precision, "computes_bf16_natively", lambda device: True)


def computes_in(checkpoint, photo) -> str:
    """What the layers that predict compute: int8 (dynamically quantised Linear layers), else the dtype of the
    Linear and convolution outputs while one photo is predicted (bf16 under autocast, fp32)."""
    served = checkpoint.predictor()
    if any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in served.modules()):
        return "int8"
    dtypes = set()
    layers = [m for m in served.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    hooks = [m.register_forward_hook(lambda module, args, output: dtypes.add(output.dtype)) for m in layers]
    inference.predicted_logits(checkpoint, photo)
    for hook in hooks:
        hook.remove()
    assert len(dtypes) == 1, dtypes
    return {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtypes.pop()]


def test_fp32_is_the_default(tiny_checkpoints, photo):
    assert demos_main.parse_args([]).prediction_precision == "fp32"
    checkpoint = demo_models.load_model(str(tiny_checkpoints[("vit", "classification")]))
    assert computes_in(checkpoint, photo) == "fp32"


@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("arch", ["vit", "resnet"])
def test_reduced_precision_reaches_the_predictor_and_agrees_with_fp32(tiny_checkpoints, photo, arch, precision):
    for task in ("classification", "regression"):
        checkpoint = demo_models.load_model(str(tiny_checkpoints[(arch, task)]), precision=precision)
        assert computes_in(checkpoint, photo) == precision
        inputs = inference.model_inputs(checkpoint, photo)
        with torch.inference_mode():
            expected = checkpoint.model(pixel_values=inputs).logits[0]
        logits = inference.predicted_logits(checkpoint, photo)
        assert logits.dtype == torch.float32
        # Random tiny weights give logits of about 0.1-1; bf16 keeps 3 significant digits, int8 about 2.
        torch.testing.assert_close(logits, expected, rtol=0, atol=0.03)
        assert not torch.equal(logits, expected), "a reduced precision that computes exactly fp32 is not reduced"


@pytest.mark.parametrize("precision", REDUCED)
def test_batches_compute_in_the_served_precision(tiny_checkpoints, photo, precision):
    """The Batch tab and python -m demos.predict (demos.predict.batch_logits) predict as single images do."""
    checkpoint = demo_models.load_model(str(tiny_checkpoints[("vit", "regression")]), precision=precision)
    images = [photo, photo.rotate(90)]
    inputs = checkpoint.processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        expected = checkpoint.model(pixel_values=inputs).logits
    logits = batch_logits(checkpoint, images)
    torch.testing.assert_close(logits, expected, rtol=0, atol=0.03)
    assert not torch.equal(logits, expected), precision


def test_explanations_keep_the_fp32_model(tiny_checkpoints):
    checkpoint = demo_models.load_model(str(tiny_checkpoints[("vit", "classification")]), precision="int8")
    assert all(type(m) is not torch.ao.nn.quantized.dynamic.Linear for m in checkpoint.model.modules())
    assert {p.dtype for p in checkpoint.model.parameters()} == {torch.float32}


def test_the_precision_applies_to_visitors_models_and_is_stated_at_start(tiny_checkpoints, photo, monkeypatch, capsys):
    folder = tiny_checkpoints[("resnet", "classification")]
    models = demo_app.load_models(str(folder), str(tiny_checkpoints[("vit", "regression")]), precision="int8")
    for checkpoint in models.checkpoints.values():
        assert computes_in(checkpoint, photo) == "int8"
    demo_app.build_app(models=models, allow_local_dirs=[folder.parent])
    out = capsys.readouterr().out
    assert "Predictions run in int8" in out and "python -m bench.serving_variants" in out, out
    monkeypatch.setattr(demo_models, "current_session", lambda: "a visitor")
    assert computes_in(models.load(str(tiny_checkpoints[("vit", "classification")])), photo) == "int8"


def test_a_model_predicts_in_one_precision_only(tiny_checkpoints):
    checkpoint = demo_models.load_model(str(tiny_checkpoints[("vit", "classification")]), precision="int8")
    int8_copy = checkpoint.predictor()
    assert inference.serve(checkpoint, "int8") is checkpoint
    assert checkpoint.predictor() is int8_copy, "quantised once per model"
    with pytest.raises(ValueError, match="already predicts in int8, not fp32"):
        inference.serve(checkpoint, "fp32")


def test_an_unknown_precision_is_a_clear_error(tiny_checkpoints):
    with pytest.raises(ValueError, match=r"Unknown prediction precision 'fp16': choose one of fp32, bf16, int8"):
        demo_app.build_app(str(tiny_checkpoints[("vit", "classification")]), prediction_precision="fp16")
    with pytest.raises(SystemExit):
        demos_main.parse_args(["--prediction-precision", "fp16"])


def test_bf16_on_a_cpu_without_it_stops_at_start_saying_what_to_use(tiny_checkpoints, monkeypatch):
    monkeypatch.setattr(serving_precision, "computes_bf16_natively", lambda device: False)
    folder = str(tiny_checkpoints[("vit", "classification")])
    with pytest.raises(SystemExit, match=r"python -m demos: bf16 predictions need a CPU that computes bf16 natively"):
        demos_main.main(["--food-model", folder, "--boneage-model", folder, "--prediction-precision", "bf16"])
    with pytest.raises(ValueError, match=r"Use fp32, or int8"):
        serving_precision.checked_precision("bf16")
