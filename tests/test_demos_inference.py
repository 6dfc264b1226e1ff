"""The demo's inference functions on tiny random ViT, ResNet and timm checkpoints (no Gradio involved)."""

import gc
import json
from types import SimpleNamespace

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from skimage import data
from transformers import AutoModelForImageClassification

from demos import inference, summary
from demos.app import load_model

ARCHITECTURES = ("vit", "resnet", "timm")


@pytest.fixture(scope="module")
def cat():
    return Image.fromarray(data.chelsea())


@pytest.fixture(scope="module")
def loaded(tiny_checkpoints):
    return {key: load_model(str(folder)) for key, folder in tiny_checkpoints.items()}


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
    assert eager_calls == {"classification": [], "regression": []}, "predictions did not touch the eager model"


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


def test_the_rollout_reads_an_eager_twin_that_shares_the_models_weights(loaded):
    model = loaded[("vit", "classification")].model
    twin = inference.eager_attention_twin(model)
    assert inference.eager_attention_twin(model) is twin, "built once per model"
    assert twin.config._attn_implementation == "eager" and model.config._attn_implementation == "sdpa"
    assert all(a is b for a, b in zip(twin.parameters(), model.parameters(), strict=True)), "no second copy"
    side = model.config.image_size // model.config.patch_size
    with torch.inference_mode():
        attentions = twin(pixel_values=torch.rand(1, 3, 32, 32), output_attentions=True).attentions
    assert len(attentions) == model.config.num_hidden_layers
    assert attentions[0].shape == (1, model.config.num_attention_heads, side * side + 1, side * side + 1)


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


def test_a_model_whose_trace_differs_is_served_eagerly_and_not_kept_alive(capsys):
    model = _SignBranch()
    served = served_by(model)
    assert not isinstance(served, torch.jit.ScriptModule)
    assert "its traced copy gave other logits" in capsys.readouterr().out
    assert torch.equal(served(-torch.ones(1, 3, 8, 8)), torch.ones(1, 3))
    del served, model
    gc.collect()
    assert not any(isinstance(m, _SignBranch) for m in inference._FROZEN), "the fallback must not keep its model alive"


def test_a_model_that_refuses_tracing_is_served_eagerly(capsys):
    served = served_by(_RefusesTracing())
    assert "could not be traced (RuntimeError: no tracing here)" in capsys.readouterr().out
    pixels = torch.rand(1, 3, 8, 8)
    assert torch.equal(served(pixels), pixels.mean((2, 3)))


def test_task_mismatch_is_a_clear_error(loaded, cat):
    with pytest.raises(ValueError, match="regression checkpoint"):
        inference.top_k(loaded[("resnet", "regression")], cat)
    with pytest.raises(ValueError, match="classification checkpoint"):
        inference.regress(loaded[("vit", "classification")], cat)


def test_vit_tokens_are_shown_on_the_grid_the_config_states(loaded, cat):
    checkpoint = loaded[("vit", "classification")]
    config = checkpoint.model.config
    side = config.image_size // config.patch_size
    views = inference.feature_views(checkpoint, cat, "block 1")
    assert views.shape == (config.hidden_size, side, side)
    assert views.rollout is not None and views.rollout.shape == views.cam.shape


@pytest.mark.parametrize("arch, task", [(a, t) for a in ARCHITECTURES for t in ("classification", "regression")])
def test_every_layer_gives_all_views(loaded, cat, arch, task):
    checkpoint = loaded[(arch, task)]
    layers = inference.feature_layers(checkpoint.model)
    assert len(layers) >= 2
    for name in layers:
        views = inference.feature_views(checkpoint, cat, name)
        height, width = checkpoint.processor(images=cat, return_tensors="pt")["pixel_values"].shape[-2:]
        assert views.cam.shape == (height, width, 3) and views.cam.dtype == np.uint8
        assert views.pca.shape[2] == 3 and views.channels.shape[2] == 3
        assert (views.rollout is not None) == (arch == "vit")


def test_cnn_stage_maps_match_a_hidden_state(loaded, cat):
    checkpoint = loaded[("resnet", "classification")]
    inputs = checkpoint.processor(images=cat, return_tensors="pt")["pixel_values"]
    name, layer = inference.resolve_layer(checkpoint.model, "stage 2")
    _, captured = inference.cam_and_features(checkpoint, inference.prepare(checkpoint, cat), layer, class_index=None)
    with torch.inference_mode():
        hidden = checkpoint.model(pixel_values=inputs, output_hidden_states=True).hidden_states[-1][0]
    torch.testing.assert_close(captured, hidden)


def test_unknown_layer_names_the_choices(loaded, cat):
    with pytest.raises(ValueError, match="stage 1, stage 2"):
        inference.feature_views(loaded[("resnet", "classification")], cat, "stage 9")


def test_grad_cam_depends_on_the_class(loaded, cat):
    checkpoint = loaded[("timm", "classification")]
    layer = list(inference.feature_layers(checkpoint.model))[2]  # a 4x4 map: the last stage of the tiny model is 1x1
    overlays = [inference.grad_cam(checkpoint, cat, layer, class_index=i) for i in range(3)]
    assert any(not np.array_equal(overlays[0], other) for other in overlays[1:])
    top = list(checkpoint.task.labels).index(next(iter(inference.top_k(checkpoint, cat, k=1))))
    default = inference.grad_cam(checkpoint, cat, layer)
    assert np.array_equal(default, inference.grad_cam(checkpoint, cat, layer, class_index=top)), "the top class"


def test_pca_rgb_separates_two_kinds_of_position():
    features = torch.zeros(8, 4, 4)
    features[:, :, :2] = torch.randn(8, 1, 1)  # left half: one feature vector, right half: zero
    image = inference.pca_rgb(features)
    left, right = image[:, : image.shape[1] // 2], image[:, image.shape[1] // 2 :]
    assert not np.array_equal(left.mean((0, 1)), right.mean((0, 1)))


def test_channel_grid_shows_the_strongest_channels_first():
    features = torch.zeros(20, 2, 2)
    features[7] = 5.0
    features[7, 0, 0] = 0.0
    grid = inference.channel_grid(features, count=4)
    assert grid.shape[2] == 3 and grid.dtype == np.uint8
    first_tile = grid[2 : 2 + inference.DISPLAY_PX // 2, 2 : 2 + inference.DISPLAY_PX // 2, 0]
    assert first_tile.min() == 0 and first_tile.max() == 255  # channel 7, scaled to [0, 1]


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


@pytest.fixture(scope="module")
def timm_vit(tmp_path_factory):
    """A tiny random timm ViT (test_vit: 10x10 patches and a CLS token), saved as timm/* hub repos are."""
    folder = tmp_path_factory.mktemp("timm-vit")
    timm.models.save_for_hf(timm.create_model("test_vit", num_classes=3), str(folder), safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    config.pop("model_args", None)  # see hub/default_backbone.py
    config["label_names"] = ["apple", "banana", "cherry"]
    (folder / "config.json").write_text(json.dumps(config))
    return load_model(str(folder))


def test_timm_vit_tokens_use_the_models_own_patch_grid(timm_vit, cat):
    rows, cols = timm_vit.model.timm_model.patch_embed.grid_size
    views = inference.feature_views(timm_vit, cat)
    assert views.shape[1:] == (rows, cols)
    assert views.cam.shape[2] == 3 and views.rollout is None  # timm attention weights are not exposed
