"""The demo's explaining functions (feature maps, Grad-CAM, attention rollout) on tiny random ViT, ResNet and timm
checkpoints (no Gradio involved)."""

import json

import numpy as np
import pytest
import timm
import torch
from transformers import ConvNextConfig, ConvNextForImageClassification, ConvNextImageProcessor

from demos.explaining import explain, layers
from demos.models import load_model
from demos.serving.inference import top_k
from demos.serving.precision import LogitsOnly
from tests.tiny_checkpoints import ARCHITECTURES


def test_vit_tokens_are_shown_on_the_grid_the_config_states(loaded, cat):
    checkpoint = loaded[("vit", "classification")]
    config = checkpoint.model.config
    side = config.image_size // config.patch_size
    views = explain.feature_views(checkpoint, cat, "block 1")
    assert views.shape == (config.hidden_size, side, side)
    assert views.rollout is not None and views.rollout.shape == views.cam.shape


@pytest.mark.parametrize("arch, task", [(a, t) for a in ARCHITECTURES for t in ("classification", "regression")])
def test_every_layer_gives_all_views(loaded, cat, arch, task):
    checkpoint = loaded[(arch, task)]
    names = layers.feature_layers(checkpoint.model)
    assert len(names) >= 2
    for name in names:
        views = explain.feature_views(checkpoint, cat, name)
        height, width = checkpoint.processor(images=cat, return_tensors="pt")["pixel_values"].shape[-2:]
        assert views.cam.shape == (height, width, 3) and views.cam.dtype == np.uint8
        assert views.pca.shape[2] == 3 and views.channels.shape[2] == 3
        assert (views.rollout is not None) == (arch == "vit")


def test_cnn_stage_maps_match_a_hidden_state(loaded, cat):
    checkpoint = loaded[("resnet", "classification")]
    inputs = checkpoint.processor(images=cat, return_tensors="pt")["pixel_values"]
    captured = explain.grad_cam_pass(checkpoint, explain.prepare(checkpoint, cat), "stage 2").features
    with torch.inference_mode():
        hidden = checkpoint.model(pixel_values=inputs, output_hidden_states=True).hidden_states[-1][0]
    torch.testing.assert_close(captured, hidden)


def test_unknown_layer_names_the_choices(loaded, cat):
    with pytest.raises(ValueError, match="stage 1, stage 2"):
        explain.feature_views(loaded[("resnet", "classification")], cat, "stage 9")


def test_grad_cam_depends_on_the_class(loaded, cat):
    checkpoint = loaded[("timm", "classification")]
    layer = list(layers.feature_layers(checkpoint.model))[2]  # a 4x4 map: the last stage of the tiny model is 1x1
    overlays = [explain.grad_cam(checkpoint, cat, layer, class_index=i) for i in range(3)]
    assert any(not np.array_equal(overlays[0], other) for other in overlays[1:])
    top = list(checkpoint.task.labels).index(next(iter(top_k(checkpoint, cat, k=1))))
    default = explain.grad_cam(checkpoint, cat, layer)
    assert np.array_equal(default, explain.grad_cam(checkpoint, cat, layer, class_index=top)), "the top class"


@pytest.mark.parametrize("arch, task", [(a, t) for a in ARCHITECTURES for t in ("classification", "regression")])
def test_grad_cam_equals_pytorch_grad_cams_own_on_the_whole_graph(loaded, cat, arch, task):
    """The backward pass stops at the target layer (explain._autograd_from_here): the map must be the one that
    pytorch-grad-cam computes with autograd over the whole network, at the first layer and the last."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image

    checkpoint = loaded[(arch, task)]
    prepared = explain.prepare(checkpoint, cat)
    grid = layers.token_grid(checkpoint.model)
    reshape = (lambda tokens: layers.tokens_to_map(tokens, grid)) if grid is not None else None
    names = list(layers.feature_layers(checkpoint.model))
    for name in (names[0], names[-1]):
        _, layer = layers.resolve_layer(checkpoint.model, name)
        targets = [explain.MeanOfOutputsTarget(checkpoint.task.output_indices(None))] if task == "regression" else None
        with (
            torch.enable_grad(),
            GradCAM(
                model=LogitsOnly(checkpoint.model),
                target_layers=[layers.cam_target_layer(layer)],
                reshape_transform=reshape,
            ) as cam,
        ):
            heatmap = cam(input_tensor=prepared.inputs, targets=targets)[0]
        expected = show_cam_on_image(prepared.pixels, heatmap, use_rgb=True)
        assert np.abs(explain.grad_cam(checkpoint, cat, name).astype(int) - expected).max() <= 1, name
    # The last layer's map left no gradient on the first layer's weights: the backward pass never went there.
    checkpoint.model.zero_grad()
    explain.grad_cam(checkpoint, cat, names[-1])
    first = layers.resolve_layer(checkpoint.model, names[0])[1]
    assert all(parameter.grad is None for parameter in first.parameters())


def test_pca_rgb_separates_two_kinds_of_position():
    features = torch.zeros(8, 4, 4)
    features[:, :, :2] = torch.randn(8, 1, 1)  # left half: one feature vector, right half: zero
    image = explain.pca_rgb(features)
    left, right = image[:, : image.shape[1] // 2], image[:, image.shape[1] // 2 :]
    assert not np.array_equal(left.mean((0, 1)), right.mean((0, 1)))


def test_channel_grid_shows_the_strongest_channels_first():
    features = torch.zeros(20, 2, 2)
    features[7] = 5.0
    features[7, 0, 0] = 0.0
    grid = explain.channel_grid(features, count=4)
    assert grid.shape[2] == 3 and grid.dtype == np.uint8
    first_tile = grid[2 : 2 + explain.DISPLAY_PX // 2, 2 : 2 + explain.DISPLAY_PX // 2, 0]
    assert first_tile.min() == 0 and first_tile.max() == 255  # channel 7, scaled to [0, 1]


def test_explanations_read_an_eager_twin_that_shares_the_models_weights(loaded):
    served = loaded[("vit", "classification")]
    model, twin = served.model, served.explanation_model()
    assert served.explanation_model() is twin, "built once per model"
    assert all(a is not b for a, b in zip(twin.modules(), model.modules(), strict=True)), "hooks on it stay its own"
    assert twin.config._attn_implementation == "eager" and model.config._attn_implementation == "sdpa"
    assert all(a is b for a, b in zip(twin.parameters(), model.parameters(), strict=True)), "no second copy"
    side = model.config.image_size // model.config.patch_size
    with torch.inference_mode():
        attentions = twin(pixel_values=torch.rand(1, 3, 32, 32), output_attentions=True).attentions
    assert len(attentions) == model.config.num_hidden_layers
    assert attentions[0].shape == (1, model.config.num_attention_heads, side * side + 1, side * side + 1)


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
    views = explain.feature_views(timm_vit, cat)
    assert views.shape[1:] == (rows, cols)
    assert views.cam.shape[2] == 3 and views.rollout is None  # timm attention weights are not exposed


@pytest.fixture(scope="module")
def tiny_convnext(tmp_path_factory):
    """A tiny random ConvNeXt: a CNN whose config also states a patch_size and an image_size (its stem)."""
    folder = tmp_path_factory.mktemp("convnext")
    config = ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=32, num_labels=3)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ConvNextForImageClassification(config).save_pretrained(folder)
    ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0).save_pretrained(folder)
    return load_model(str(folder))


def test_a_convnext_is_explained_as_a_cnn_without_tokens_or_rollout(tiny_convnext, cat):
    assert layers.token_grid(tiny_convnext.model) is None and not layers.has_attention_rollout(tiny_convnext.model)
    views = explain.feature_views(tiny_convnext, cat, "stage 1")
    assert views.shape == (8, 8, 8)  # the stem's 4x4 patches of a 32 px input, 8 channels: a feature map, not tokens
    assert views.rollout is None and views.cam.shape == (32, 32, 3)
