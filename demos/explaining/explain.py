"""Explaining a prediction, free of Gradio: a layer's strongest channels, a PCA view of its features, Grad-CAM and
ViT attention rollout. Predictions themselves are demos/serving/inference.py; which layers a model has is
demos/explaining/layers.py.

Every function takes a `hub.Checkpoint` (the app's are served models: their hooks go on the explanation copy, which
nothing else runs through) and a PIL image (or its `ModelInput`). Preprocessing is the checkpoint's own
image processor; pixel-space views (overlays) come from `hub.preprocessing.denormalize` of that same input, so an
overlay lines up with exactly what the model saw.

pytorch-grad-cam is imported by the first explanation, not with this module: it brings OpenCV, scikit-learn and SciPy
(about 2 s and 60 MB), which the app's start and its predictions never need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.utils import make_grid

from demos.explaining.annotate import label, label_height
from demos.explaining.layers import (
    as_feature_map,
    cam_target_layer,
    has_attention_rollout,
    resolve_layer,
    token_grid,
    tokens_to_map,
)
from demos.serving.inference import model_inputs, served
from demos.serving.precision import LogitsOnly
from hub import Checkpoint
from hub.preprocessing import denormalize, image_spec

GRID_CHANNELS = 16
DISPLAY_PX = 224  # side of the square views shown in the app; a display choice, not a model input size
GRID_PADDING_PX = 2


@dataclass
class ModelInput:
    inputs: torch.Tensor  # (1, 3, H, W), normalised: what the model receives
    pixels: np.ndarray  # (H, W, 3) float in [0, 1]: the same image, for overlays


def prepare(checkpoint: Checkpoint, image: Image.Image) -> ModelInput:
    inputs = model_inputs(checkpoint, image)
    pixels = denormalize(image_spec(checkpoint.processor), inputs[0]).clamp(0, 1)
    return ModelInput(inputs=inputs, pixels=pixels.permute(1, 2, 0).numpy().astype(np.float32))


# --- feature views ------------------------------------------------------------------------------


def _upscale(maps: torch.Tensor, side: int = DISPLAY_PX) -> torch.Tensor:
    """(N, h, w) -> (N, side, side) with visible cells (nearest neighbour)."""
    return F.interpolate(maps[:, None], size=(side, side), mode="nearest")[:, 0]


def _to_unit_range(values: torch.Tensor) -> torch.Tensor:
    """Scale each map (dim 0) to [0, 1] independently."""
    flat = values.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    scale = (high - low).clamp_min(1e-8)
    return (values - low.view(-1, 1, 1)) / scale.view(-1, 1, 1)


def channel_grid(features: torch.Tensor, count: int = GRID_CHANNELS) -> np.ndarray:
    """The `count` channels with the highest mean activation, tiled as uint8 RGB, strongest first.

    Each tile is scaled to its own range (black = its lowest activation, white = its highest) and captioned below
    with its channel number and that range, so that tiles can be told apart and their scales compared. Below, not
    on it: on a coarse map (4x4 cells) a caption on the tile would hide its bottom row.
    """
    strongest = features.mean(dim=(1, 2)).topk(min(count, features.shape[0])).indices
    side, columns = DISPLAY_PX // 2, int(np.ceil(np.sqrt(len(strongest))))
    line = label_height()
    tiles = F.pad(_upscale(_to_unit_range(features[strongest]), side=side), (0, 0, 0, 2 * line))  # black below
    grid = make_grid(tiles[:, None], nrow=columns, padding=GRID_PADDING_PX, pad_value=1.0)
    image = Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    for position, channel in enumerate(strongest.tolist()):
        row, column = divmod(position, columns)
        low, high = features[channel].min().item(), features[channel].max().item()
        left = GRID_PADDING_PX + column * (side + GRID_PADDING_PX)
        bottom = (row + 1) * (side + 2 * line + GRID_PADDING_PX)
        label(image, (left, bottom - line), f"channel {channel}", from_bottom=True)
        # Two spaces: PIL's small default font draws one after a digit so narrow that "14 to 37" reads "14to 37".
        label(image, (left, bottom), f"{low:.2g}  to  {high:.2g}", from_bottom=True)
    return np.asarray(image)


def pca_rgb(features: torch.Tensor) -> np.ndarray:
    """Project each position's feature vector on the first 3 principal components -> an RGB image."""
    channels, rows, cols = features.shape
    vectors = features.reshape(channels, -1).T  # (positions, channels)
    components = min(3, channels, vectors.shape[0])
    _, _, basis = torch.pca_lowrank(vectors, q=components, center=True)
    projected = (vectors - vectors.mean(0)) @ basis[:, :components]
    if components < 3:
        projected = F.pad(projected, (0, 3 - components))
    image = _to_unit_range(projected.T.reshape(3, rows, cols))
    return (_upscale(image).permute(1, 2, 0).numpy() * 255).astype(np.uint8)


# --- Grad-CAM -----------------------------------------------------------------------------------


class MeanOfOutputsTarget:
    """pytorch-grad-cam target: the mean of some raw outputs (one output, or all of a conditioned regression head)."""

    def __init__(self, indices: list[int]):
        self.indices = indices

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return model_output[..., self.indices].mean(-1)


@dataclass
class CamPass:
    """What one Grad-CAM forward and backward pass at a layer gives."""

    overlay: np.ndarray  # (H, W, 3) uint8: the heatmap over the model's input
    features: torch.Tensor  # (C, rows, cols): the layer's output, ViT tokens laid on their grid
    logits: torch.Tensor  # (outputs,): what the model predicted in that pass


def grad_cam(
    checkpoint: Checkpoint,
    image: Image.Image,
    layer_name: str | None = None,
    class_index: int | None = None,
    condition: str | None = None,
) -> np.ndarray:
    """Grad-CAM overlay (uint8 RGB, model input size) for a class (default: the top one) or the regression output.

    A conditioned regression explains the output for `condition` (the mean of its outputs when None: unknown).
    """
    return grad_cam_pass(checkpoint, prepare(checkpoint, image), layer_name, class_index, condition).overlay


def grad_cam_pass(
    checkpoint: Checkpoint,
    prepared: ModelInput,
    layer_name: str | None = None,
    class_index: int | None = None,
    condition: str | None = None,
) -> CamPass:
    """Grad-CAM at the named layer (the last when None) with the layer's output and the logits, from one forward pass.

    `class_index` None means the top class, which pytorch-grad-cam picks from that same pass; a regression
    checkpoint explains its output for `condition` (the mean of its outputs when None).
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if checkpoint.task.is_regression:
        targets = [MeanOfOutputsTarget(checkpoint.task.output_indices(condition))]
    else:
        targets = None if class_index is None else [ClassifierOutputTarget(class_index)]
    grid = token_grid(checkpoint.model)
    reshape = (lambda tokens: tokens_to_map(tokens, grid)) if grid is not None else None
    captured = []
    with served(checkpoint).hookable() as explanation_copy:
        _, layer = resolve_layer(explanation_copy, layer_name)
        target = cam_target_layer(layer)
        # Before GradCAM's own hooks (prepend): they must see the output the cut makes.
        cut = target.register_forward_hook(_autograd_from_here, prepend=True)
        with (
            torch.no_grad(),  # until the target layer (`_autograd_from_here`)
            GradCAM(model=LogitsOnly(explanation_copy), target_layers=[target], reshape_transform=reshape) as cam,
        ):
            handle = layer.register_forward_hook(lambda module, args, output: captured.append(output))
            try:
                heatmap = cam(input_tensor=prepared.inputs, targets=targets)[0]
            finally:
                handle.remove()
                cut.remove()
            logits = cam.outputs[0].detach().float()
    return CamPass(
        overlay=show_cam_on_image(prepared.pixels, heatmap, use_rgb=True),
        features=as_feature_map(captured[0], grid)[0].detach().float(),
        logits=logits,
    )


def _autograd_from_here(module, args, output: torch.Tensor) -> torch.Tensor:
    """Forward hook on Grad-CAM's target layer: the pass up to it ran without autograd, and its output becomes the
    leaf from which autograd records the rest. Grad-CAM needs the gradient down to this layer only; with the whole
    pass recorded, the backward pass ran through every layer (food10 at its last layer: 362 ms, where its forward
    pass takes 90). The gradient at the layer, and so the map, is the same."""
    torch.set_grad_enabled(True)  # for the rest of this forward pass; the caller's `no_grad` block restores the mode
    return output.detach().requires_grad_(True)


# --- attention rollout --------------------------------------------------------------------------


def attention_rollout(checkpoint: Checkpoint, prepared: ModelInput) -> np.ndarray | None:
    """Attention rollout (Abnar & Zuidema 2020) overlay for ViT checkpoints; None for models without attentions.

    Hand-written: neither transformers nor pytorch-grad-cam provides rollout.
    """
    if not has_attention_rollout(checkpoint.model):
        return None
    from pytorch_grad_cam.utils.image import show_cam_on_image

    explanation_copy = served(checkpoint).explanation_model()  # no hooks: the hook lock is not needed
    with torch.inference_mode():
        attentions = explanation_copy(pixel_values=prepared.inputs, output_attentions=True).attentions
    if not attentions:  # a model whose grid says ViT but whose blocks report no weights: say so, do not hide the panel
        raise ValueError(f"{type(explanation_copy).__name__} returns no attention weights, even with eager attention.")
    rollout = None
    for attention in attentions:  # (1, heads, N, N) per block
        mixed = attention[0].mean(0)
        mixed = mixed + torch.eye(mixed.shape[0])  # the residual connection keeps each token's own value
        mixed = mixed / mixed.sum(-1, keepdim=True)
        rollout = mixed if rollout is None else mixed @ rollout
    rows, cols = token_grid(checkpoint.model)
    relevance = rollout[0, -rows * cols :].reshape(1, rows, cols)  # how much the first (CLS) token draws on each patch
    height, width = prepared.pixels.shape[:2]
    mask = F.interpolate(_to_unit_range(relevance)[None], size=(height, width), mode="bilinear")[0, 0]
    return show_cam_on_image(prepared.pixels, mask.numpy(), use_rgb=True)


# --- the Feature maps tab's views -----------------------------------------------------------------


@dataclass
class FeatureViews:
    layer: str
    shape: tuple[int, int, int]  # (channels, rows, cols) of the layer's map
    channels: np.ndarray
    pca: np.ndarray
    cam: np.ndarray
    rollout: np.ndarray | None
    logits: torch.Tensor  # (outputs,) of the same pass: what the model predicted for this image


def feature_views(
    checkpoint: Checkpoint,
    image: Image.Image,
    layer_name: str | None = None,
    class_index: int | None = None,
    condition: str | None = None,
) -> FeatureViews:
    """Everything the feature-map tab shows for one image and one layer."""
    name, _ = resolve_layer(checkpoint.model, layer_name)
    prepared = prepare(checkpoint, image)
    cam = grad_cam_pass(checkpoint, prepared, name, class_index, condition)
    return FeatureViews(
        layer=name,
        shape=tuple(cam.features.shape),
        channels=channel_grid(cam.features),
        pca=pca_rgb(cam.features),
        cam=cam.overlay,
        rollout=attention_rollout(checkpoint, prepared),
        logits=cam.logits,
    )
