"""Predictions (demos/inference.py) on tiny random ViT, ResNet and timm checkpoints, and the Model tab's summary."""

import gc
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForImageClassification

from demos import inference, summary
from demos.app import load_model
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


def count_forward_calls(model: torch.nn.Module) -> list:
    calls = []
    model.register_forward_hook(lambda module, args, output: calls.append(1))
    return calls


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_predictions_run_a_frozen_copy_with_batchnorm_folded_away(tiny_checkpoints, cat, arch):
    checkpoints = {task: load_model(str(tiny_checkpoints[(arch, task)])) for task in ("classification", "regression")}
    frozen = inference.predictor(checkpoints["classification"])
    assert isinstance(frozen, torch.jit.ScriptModule)
    assert inference.predictor(checkpoints["classification"]) is frozen, "built once per model"
    if arch == "resnet":
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in checkpoints["classification"].model.modules())
        assert "batch_norm" not in str(frozen.graph)
    eager_calls = {task: count_forward_calls(checkpoint.model) for task, checkpoint in checkpoints.items()}
    inference.top_k(checkpoints["classification"], cat)
    inference.regress(checkpoints["regression"], cat)
    assert eager_calls == {"classification": [], "regression": []}, "predictions did not run the model itself"


def test_vit_predictions_run_on_sdpa_attention_and_equal_eager_attentions(loaded, tiny_checkpoints, cat):
    checkpoint = loaded[("vit", "classification")]
    assert checkpoint.model.config._attn_implementation == "sdpa"
    assert "scaled_dot_product_attention" in str(inference.predictor(checkpoint).graph)
    eager = AutoModelForImageClassification.from_pretrained(
        tiny_checkpoints[("vit", "classification")], attn_implementation="eager"
    ).eval()
    with torch.inference_mode():
        expected = eager(pixel_values=inference.model_inputs(checkpoint, cat)).logits[0]
    torch.testing.assert_close(inference.predicted_logits(checkpoint, cat), expected, rtol=1e-4, atol=1e-5)


class _SignBranch(torch.nn.Module):
    """A model whose output depends on Python control flow, which a trace fixes at its example input."""

    def forward(self, pixel_values):
        logits = pixel_values.mean((2, 3)) if pixel_values.mean() > 0 else -pixel_values.mean((2, 3))
        return SimpleNamespace(logits=logits)


class _RefusesTracing(torch.nn.Module):
    def forward(self, pixel_values):
        if torch.jit.is_tracing():
            raise RuntimeError("no tracing here")
        return SimpleNamespace(logits=pixel_values.mean((2, 3)))


def served_by(model: torch.nn.Module) -> torch.nn.Module:
    checkpoint = SimpleNamespace(model=model, processor=None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inference, "image_spec", lambda processor: SimpleNamespace(height=8, width=8))
        return inference.predictor(checkpoint)


def test_a_model_whose_trace_differs_is_served_untraced_and_not_kept_alive(capsys):
    model = _SignBranch()
    served = served_by(model)
    assert not isinstance(served, torch.jit.ScriptModule)
    assert "its traced copy gave other logits" in capsys.readouterr().out
    assert torch.equal(served(-torch.ones(1, 3, 8, 8)), torch.ones(1, 3))
    del served, model
    gc.collect()
    assert not any(isinstance(m, _SignBranch) for m in inference._FROZEN), "the fallback must not keep its model alive"


def test_a_model_that_refuses_tracing_is_served_untraced(capsys):
    served = served_by(_RefusesTracing())
    assert "could not be traced (RuntimeError: no tracing here)" in capsys.readouterr().out
    pixels = torch.rand(1, 3, 8, 8)
    assert torch.equal(served(pixels), pixels.mean((2, 3)))


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
