"""Predictions (demos/serving/inference.py) on tiny random ViT, ResNet and timm checkpoints; the Model tab's summary."""

import gc
import weakref
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch._dynamo
from transformers import AutoModelForImageClassification

from demos.explaining import summary
from demos.models import load_model
from demos.serving import inference
from hub import Checkpoint, load_checkpoint
from tests.tiny_checkpoints import ARCHITECTURES


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_top_k_ranks_the_checkpoints_own_labels_by_softmax(loaded, cat, arch):
    checkpoint = loaded[(arch, "classification")]
    ranked = inference.top_k(checkpoint, cat, k=2)
    inputs = checkpoint.processor(images=cat, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        expected = checkpoint.model(pixel_values=inputs).logits[0].softmax(-1)
    best = int(expected.argmax())
    assert list(ranked)[0] == checkpoint.task.labels[best]
    assert ranked[checkpoint.task.labels[best]] == pytest.approx(float(expected[best]), abs=1e-5)
    assert len(ranked) == 2


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_regress_returns_the_raw_first_logit(loaded, cat, arch):
    checkpoint = loaded[(arch, "regression")]
    inputs = checkpoint.processor(images=cat, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        expected = float(checkpoint.model(pixel_values=inputs).logits[0, 0])
    assert inference.regress(checkpoint, cat) == pytest.approx(expected, abs=1e-5)


@pytest.fixture
def compiling():
    """torch.compile on (tests/conftest.py turns it off for every other test)."""
    with torch._dynamo.config.patch(disable=False):
        yield


@pytest.mark.parametrize("arch", ["vit", "timm"])
def test_start_up_models_predict_through_a_compiled_copy_equal_to_the_model(tiny_checkpoints, cat, compiling, arch):
    checkpoint = load_model(str(tiny_checkpoints[(arch, "classification")]), compile=True)
    assert checkpoint.wait_until_compiled(timeout=300)
    served = checkpoint.predictor()
    assert isinstance(served, torch._dynamo.eval_frame.OptimizedModule)
    assert checkpoint.predictor() is served, "compiled once per model"
    with torch.inference_mode():
        expected = checkpoint.model(pixel_values=inference.model_inputs(checkpoint, cat)).logits[0]
    torch.testing.assert_close(inference.predicted_logits(checkpoint, cat), expected, rtol=1e-4, atol=1e-5)


def test_hooks_on_the_model_while_it_compiles_stay_out_of_the_compiled_copy(tiny_checkpoints, cat, compiling):
    checkpoint = load_checkpoint(str(tiny_checkpoints[("timm", "classification")]))
    checkpoint = inference.serve(checkpoint, compile=True)
    hooked = []  # a Grad-CAM or feature-map request while the model compiles: they hook into the model itself
    checkpoint.model.register_forward_hook(lambda module, args, output: hooked.append(module))
    assert checkpoint.wait_until_compiled(timeout=300)
    hooked.clear()
    inference.predicted_logits(checkpoint, cat)
    assert hooked == [], "the hook was compiled into the predictions"


def test_models_loaded_without_compile_predict_with_the_model_itself(tiny_checkpoints):
    checkpoint = load_model(str(tiny_checkpoints[("resnet", "classification")]))
    assert not checkpoint.wait_until_compiled(timeout=0), "nothing is compiling"
    assert checkpoint.predictor().model is checkpoint.model


def test_vit_predictions_run_on_sdpa_attention_and_equal_eager_attentions(loaded, tiny_checkpoints, cat):
    checkpoint = loaded[("vit", "classification")]
    assert checkpoint.model.config._attn_implementation == "sdpa"
    eager = AutoModelForImageClassification.from_pretrained(
        tiny_checkpoints[("vit", "classification")], attn_implementation="eager"
    ).eval()
    with torch.inference_mode():
        expected = eager(pixel_values=inference.model_inputs(checkpoint, cat)).logits[0]
    torch.testing.assert_close(inference.predicted_logits(checkpoint, cat), expected, rtol=1e-4, atol=1e-5)


class _Mean(torch.nn.Module):
    def forward(self, pixel_values):
        return SimpleNamespace(logits=pixel_values.mean((2, 3)))


def mean_checkpoint() -> Checkpoint:
    """A checkpoint whose model predicts each channel's mean: nothing to load, nothing but the model to serve."""
    return Checkpoint(model=_Mean(), processor=None, task=None, source="a model", folder=Path())


def compiled_with(monkeypatch, compile_as) -> tuple[inference.ServedModel, bool]:
    """A model served with compile, torch.compile replaced by `compile_as`: (its checkpoint, whether it compiled)."""
    monkeypatch.setattr(torch, "compile", lambda module, **options: compile_as(module))
    monkeypatch.setattr(inference, "image_spec", lambda processor: SimpleNamespace(height=8, width=8))
    checkpoint = inference.serve(
        Checkpoint(model=_Mean(), processor=None, task=None, source="a model", folder=Path()), compile=True
    )
    return checkpoint, checkpoint.wait_until_compiled(timeout=60)


def test_a_model_that_cannot_be_compiled_is_served_as_it_is(monkeypatch, compiling, capsys):
    def no_compiler(module):
        def fail(pixel_values):
            raise RuntimeError("no C++ compiler")

        return fail

    checkpoint, compiled = compiled_with(monkeypatch, no_compiler)
    assert not compiled
    assert (
        "a model: predictions run uncompiled: compiling failed (RuntimeError: no C++ compiler)"
        in capsys.readouterr().out
    )
    pixels = torch.rand(1, 3, 8, 8)
    assert torch.equal(checkpoint.predictor()(pixels), pixels.mean((2, 3)))


def test_a_compiled_copy_that_gives_other_logits_is_not_served(monkeypatch, compiling, capsys):
    checkpoint, compiled = compiled_with(monkeypatch, lambda module: lambda pixel_values: module(pixel_values) + 1)
    assert not compiled
    assert "a model: predictions run uncompiled: the compiled copy gave other logits" in capsys.readouterr().out


def test_a_model_not_compiled_is_not_kept_alive_by_its_serving():
    served = inference.serve(mean_checkpoint())
    model = weakref.ref(served.model)
    del served
    gc.collect()
    assert model() is None, "a visitor's evicted model must be freed"


def test_task_mismatch_is_a_clear_error(loaded, cat):
    with pytest.raises(ValueError, match="regression checkpoint"):
        inference.top_k(loaded[("resnet", "regression")], cat)
    with pytest.raises(ValueError, match="classification checkpoint"):
        inference.regress(loaded[("vit", "classification")], cat)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_layer_table_lists_modules_with_shapes_and_parameters(loaded, arch):
    checkpoint = loaded[(arch, "classification")]
    table = summary.layer_table(checkpoint)
    assert list(table.columns) == ["layer", "type", "output shape", "parameters", "trainable"]
    assert table.loc[0, "parameters"] == sum(p.numel() for p in checkpoint.model.parameters())
    assert table.loc[0, "output shape"] == f"[1, {len(checkpoint.task.labels)}]"
    assert set(table["layer"][1:]) <= {name for name, _ in checkpoint.model.named_modules()}
    text = summary.describe(checkpoint)
    assert "`apple`, `banana`, `cherry`" in text and "none stated in the card" in text
