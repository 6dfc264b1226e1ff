"""Inference behind the demo tabs, free of Gradio: predictions, feature maps, PCA views, Grad-CAM, attention.

Every function takes a `hub.Checkpoint` and a PIL image. Preprocessing is the checkpoint's own image
processor; pixel-space views (overlays) come from `hub.preprocessing.denormalize` of that same input,
so an overlay lines up with exactly what the model saw.
"""

from __future__ import annotations

import copy
import itertools
import threading
import warnings
import weakref
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torchvision.utils import make_grid

from demos.annotate import label
from hub import Checkpoint
from hub.preprocessing import denormalize, image_spec

TOP_K = 5
GRID_CHANNELS = 16
DISPLAY_PX = 224  # side of the square views shown in the app; a display choice, not a model input size
GRID_PADDING_PX = 2
# Hooks registered on a shared model would catch each other's activations under concurrent requests.
_HOOK_LOCK = threading.Lock()


@dataclass
class ModelInput:
    inputs: torch.Tensor  # (1, 3, H, W), normalised: what the model receives
    pixels: np.ndarray  # (H, W, 3) float in [0, 1]: the same image, for overlays


def model_inputs(checkpoint: Checkpoint, image: Image.Image) -> torch.Tensor:
    """(1, 3, H, W): the checkpoint's own processor applied to the image."""
    return checkpoint.processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"]


def prepare(checkpoint: Checkpoint, image: Image.Image) -> ModelInput:
    inputs = model_inputs(checkpoint, image)
    pixels = denormalize(image_spec(checkpoint.processor), inputs[0]).clamp(0, 1)
    return ModelInput(inputs=inputs, pixels=pixels.permute(1, 2, 0).numpy().astype(np.float32))


class _LogitsOnly(torch.nn.Module):
    """pytorch-grad-cam expects model(x) -> scores tensor; transformers models return an output object."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


# Predictions alone (/classify, /bone_age's number) run a frozen TorchScript copy of the model, built once per
# model: BatchNorm folded into the convolutions, oneDNN kernels (speed against the pipeline: bench/RESULTS.md).
# TorchScript is deprecated (torch 2.14 warns); it is used because it needs no compile step at start-up. How
# torch.compile or torch.export compare on this CPU has not been measured.
_FROZEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> frozen copy, or None: serve eagerly
_FROZEN_LOCK = threading.Lock()


def predictor(checkpoint: Checkpoint) -> torch.nn.Module:
    """pixel_values -> logits for predictions: the frozen copy, or the eager model if it cannot be traced exactly.

    The copy is built on first use and assumes the model's weights do not change afterwards (nothing in the
    demo changes them).
    """
    model = checkpoint.model
    if model not in _FROZEN:  # built outside the lock: tracing a large model takes seconds other requests need not wait
        frozen = _frozen_copy(model, image_spec(checkpoint.processor))
        with _FROZEN_LOCK:
            _FROZEN.setdefault(model, frozen)
    frozen = _FROZEN[model]
    return (
        frozen if frozen is not None else _LogitsOnly(model)
    )  # the wrapper is not cached: it would keep its key alive


def _frozen_copy(model: torch.nn.Module, spec) -> torch.jit.ScriptModule | None:
    eager = _LogitsOnly(model).eval()
    example = torch.randn(1, 3, spec.height, spec.width, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # Tracer warnings about Python values fixed at this input size, and TorchScript's deprecation notices.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", FutureWarning)
            frozen = torch.jit.optimize_for_inference(torch.jit.trace(eager, example))
            # Checked on another input: one that flips every sign takes any branch the trace baked in the other way.
            matches = torch.allclose(frozen(-example), eager(-example), rtol=1e-3, atol=1e-3)
    except Exception as err:  # noqa: BLE001 - tracing runs the model's own Python, which may refuse in any way
        print(
            f"* {type(model).__name__} runs eagerly: it could not be traced ({type(err).__name__}: {err})", flush=True
        )
        return None
    if not matches:  # a trace bakes in control flow; a model whose output then differs must not be served
        print(f"* {type(model).__name__} runs eagerly: its traced copy gave other logits", flush=True)
        return None
    return frozen


def predicted_logits(checkpoint: Checkpoint, image: Image.Image) -> torch.Tensor:
    with torch.inference_mode():
        return predictor(checkpoint)(model_inputs(checkpoint, image))[0]


def top_k(checkpoint: Checkpoint, image: Image.Image, k: int = TOP_K) -> dict[str, float]:
    """{label: probability} for the k most probable classes of a classification checkpoint."""
    if checkpoint.task.is_regression:
        raise ValueError(f"{checkpoint.source} is a regression checkpoint: it predicts a number, not classes.")
    probabilities = predicted_logits(checkpoint, image).softmax(-1)
    values, indices = probabilities.topk(min(k, probabilities.numel()))
    return {checkpoint.task.labels[i]: float(p) for p, i in zip(values.tolist(), indices.tolist(), strict=True)}


def ood_threshold(checkpoint: Checkpoint) -> float | None:
    """The calibrated top probability below which a photo fits none of the classes (config `ood_threshold`), if stored.

    Training picks it on validation so that about 95% of validation images reach it; without it, nothing is claimed.
    """
    value = getattr(checkpoint.model.config, "ood_threshold", None)
    return None if value is None else float(value)


def condition_outputs(checkpoint: Checkpoint) -> dict[str, int]:
    """{side-column value as written in the training metadata: output index} of a conditioned regression, else {}.

    E.g. {"false": 0, "true": 1} for bone age conditioned on the column "male" (config `condition_outputs`).
    """
    config = checkpoint.model.config
    if not getattr(config, "condition_column", None):
        return {}
    return {str(value): int(index) for value, index in config.condition_outputs.items()}


def output_indices(checkpoint: Checkpoint, condition: str | None) -> list[int]:
    """The regression outputs that answer for `condition`: its own output, or all of them when it is unknown (None).

    An unconditioned checkpoint has one output, logits[:, 0], whatever the condition.
    """
    outputs = condition_outputs(checkpoint)
    if not outputs:
        return [0]
    if condition is None:
        return sorted(outputs.values())
    if condition not in outputs:
        column = checkpoint.model.config.condition_column
        raise ValueError(f"{checkpoint.source} knows {column} = {', '.join(outputs)}, not '{condition}'.")
    return [outputs[condition]]


def regress(checkpoint: Checkpoint, image: Image.Image, condition: str | None = None) -> float:
    """The regression checkpoint's output for `condition` (the mean of its outputs when unknown), in its unit."""
    if not checkpoint.task.is_regression:
        raise ValueError(f"{checkpoint.source} is a classification checkpoint: it predicts classes, not a number.")
    return float(predicted_logits(checkpoint, image)[output_indices(checkpoint, condition)].mean())


# --- layers -------------------------------------------------------------------------------------


def feature_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """{display name: module} of the stages (CNNs) or blocks (ViTs) whose outputs are feature maps."""
    if hasattr(model, "timm_model"):  # timm declares its feature stages itself
        # Named by module and resolution: timm lists only the modules where the resolution drops (blocks.0, 1, 2,
        # 4, 6 of an EfficientNet), so numbering them "stage 1-5" would hide which blocks they are.
        modules = dict(model.timm_model.named_modules())
        return {
            f"{info['module']} (1/{info['reduction']} of the input size)": modules[info["module"]]
            for info in model.timm_model.feature_info
        }
    base = model.base_model
    encoder = getattr(base, "encoder", None)
    if encoder is not None and hasattr(encoder, "stages"):  # ResNet, ConvNeXt, RegNet...
        return {f"stage {i + 1}": stage for i, stage in enumerate(encoder.stages)}
    blocks = getattr(base, "layers", None) or getattr(encoder, "layer", None)  # ViT family (transformers 5 / 4)
    if blocks is not None:
        return {f"block {i + 1}": block for i, block in enumerate(blocks)}
    raise ValueError(
        f"Feature maps are not wired for {type(model).__name__}: use a ViT, ResNet/ConvNeXt or timm checkpoint."
    )


def resolve_layer(model: torch.nn.Module, name: str | None) -> tuple[str, torch.nn.Module]:
    """The named layer, or the last one when `name` is empty."""
    layers = feature_layers(model)
    if not name:
        name = list(layers)[-1]
    if name not in layers:
        raise ValueError(f"No layer '{name}' in {type(model).__name__}; choose one of: {', '.join(layers)}.")
    return name, layers[name]


def token_grid(model: torch.nn.Module) -> tuple[int, int] | None:
    """(rows, cols) of patch tokens for a ViT, read from the model; None for CNNs."""
    timm_model = getattr(model, "timm_model", None)
    if timm_model is not None:
        patch_embed = getattr(timm_model, "patch_embed", None)
        return tuple(patch_embed.grid_size) if patch_embed is not None else None
    config = model.config
    if hasattr(config, "patch_size") and hasattr(config, "image_size"):
        side = config.image_size // config.patch_size
        return side, side
    return None


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, N, D) tokens -> (B, D, rows, cols): the last rows*cols tokens are patches (CLS etc. come first)."""
    rows, cols = grid
    patches = tokens[:, -rows * cols :, :]
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], rows, cols)


def _as_feature_map(output, grid: tuple[int, int] | None) -> torch.Tensor:
    tensor = output[0] if isinstance(output, (tuple, list)) else output
    if tensor.ndim == 3:
        if grid is None:
            raise ValueError("This layer outputs tokens but the model states no patch grid.")
        return tokens_to_map(tensor, grid)
    return tensor


# --- views --------------------------------------------------------------------------------------


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

    Each tile is scaled to its own range (black = its lowest activation, white = its highest) and labelled with
    its channel number and that range, so that tiles can be told apart and their scales compared.
    """
    strongest = features.mean(dim=(1, 2)).topk(min(count, features.shape[0])).indices
    side, columns = DISPLAY_PX // 2, int(np.ceil(np.sqrt(len(strongest))))
    tiles = _upscale(_to_unit_range(features[strongest]), side=side)
    grid = make_grid(tiles[:, None], nrow=columns, padding=GRID_PADDING_PX, pad_value=1.0)
    image = Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    for position, channel in enumerate(strongest.tolist()):
        row, column = divmod(position, columns)
        low, high = features[channel].min().item(), features[channel].max().item()
        bottom_left = (GRID_PADDING_PX + column * (side + GRID_PADDING_PX), (row + 1) * (side + GRID_PADDING_PX))
        label(image, bottom_left, f"#{channel}: {low:.2g} to {high:.2g}", from_bottom=True)
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


# --- Grad-CAM and attention -----------------------------------------------------------------------


def cam_target_layer(model: torch.nn.Module, layer: torch.nn.Module) -> torch.nn.Module:
    # A ViT's last block reaches the head only through the CLS token, so its patch tokens get no
    # gradient; the usual ViT Grad-CAM target is the normalised tokens entering the block instead.
    return getattr(layer, "layernorm_before", None) or getattr(layer, "norm1", None) or layer


class MeanOfOutputsTarget:
    """pytorch-grad-cam target: the mean of some raw outputs (one output, or all of a conditioned regression head)."""

    def __init__(self, indices: list[int]):
        self.indices = indices

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return model_output[..., self.indices].mean(-1)


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
    _, layer = resolve_layer(checkpoint.model, layer_name)
    overlay, _, _ = _grad_cam_pass(checkpoint, prepare(checkpoint, image), layer, class_index, condition)
    return overlay


def cam_and_features(
    checkpoint: Checkpoint, prepared: ModelInput, layer: torch.nn.Module, class_index: int | None
) -> tuple[np.ndarray, torch.Tensor]:
    """(Grad-CAM overlay at `layer`, the layer's (C, h, w) output), both from one forward pass.

    `class_index` None means the top class, which pytorch-grad-cam picks from that same pass; regression
    checkpoints explain their output.
    """
    overlay, features, _ = _grad_cam_pass(checkpoint, prepared, layer, class_index, condition=None)
    return overlay, features


def _grad_cam_pass(
    checkpoint: Checkpoint,
    prepared: ModelInput,
    layer: torch.nn.Module,
    class_index: int | None,
    condition: str | None,
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """cam_and_features plus the pass's logits (1-D), which say what the top class was."""
    model = checkpoint.model
    if checkpoint.task.is_regression:
        targets = [MeanOfOutputsTarget(output_indices(checkpoint, condition))]
    else:
        targets = None if class_index is None else [ClassifierOutputTarget(class_index)]
    grid = token_grid(model)
    reshape = (lambda tokens: tokens_to_map(tokens, grid)) if grid is not None else None
    captured = []
    with (
        _HOOK_LOCK,
        torch.enable_grad(),
        GradCAM(
            model=_LogitsOnly(model), target_layers=[cam_target_layer(model, layer)], reshape_transform=reshape
        ) as cam,
    ):
        handle = layer.register_forward_hook(lambda module, args, output: captured.append(output))
        try:
            heatmap = cam(input_tensor=prepared.inputs, targets=targets)[0]
        finally:
            handle.remove()
        logits = cam.outputs[0].detach().float()
    features = _as_feature_map(captured[0], grid)[0].detach().float()
    return show_cam_on_image(prepared.pixels, heatmap, use_rgb=True), features, logits


# The loaded model keeps SDPA attention, the fastest for predictions, Grad-CAM and the rest; SDPA returns no attention
# weights, so the rollout runs a twin of the model with eager attention that shares its weights (no second copy).
_EAGER_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its eager-attention twin
_EAGER_TWINS_LOCK = threading.Lock()


def eager_attention_twin(model: torch.nn.Module) -> torch.nn.Module:
    """The model with eager attention (which returns attention weights), built once, sharing the model's tensors.

    A twin rather than `model.set_attn_implementation("eager")` per call: that setting lives in the shared config,
    so it would switch the attention of every request running on the model at the same time.
    """
    with _EAGER_TWINS_LOCK:
        if model not in _EAGER_TWINS:
            shared = {id(tensor): tensor for tensor in itertools.chain(model.parameters(), model.buffers())}
            twin = copy.deepcopy(model, memo=shared)  # new modules and config around the same weights
            twin.set_attn_implementation("eager")
            _EAGER_TWINS[model] = twin
        return _EAGER_TWINS[model]


def attention_rollout(checkpoint: Checkpoint, prepared: ModelInput) -> np.ndarray | None:
    """Attention rollout (Abnar & Zuidema 2020) overlay for ViT checkpoints; None for models without attentions.

    Hand-written: neither transformers nor pytorch-grad-cam provides rollout.
    """
    grid = token_grid(checkpoint.model)
    if grid is None or hasattr(checkpoint.model, "timm_model"):
        return None
    twin = eager_attention_twin(checkpoint.model)
    with torch.inference_mode():
        attentions = twin(pixel_values=prepared.inputs, output_attentions=True).attentions
    if not attentions:
        return None
    rollout = None
    for attention in attentions:  # (1, heads, N, N) per block
        mixed = attention[0].mean(0)
        mixed = mixed + torch.eye(mixed.shape[0])  # the residual connection keeps each token's own value
        mixed = mixed / mixed.sum(-1, keepdim=True)
        rollout = mixed if rollout is None else mixed @ rollout
    rows, cols = grid
    relevance = rollout[0, -rows * cols :].reshape(1, rows, cols)  # how much the first (CLS) token draws on each patch
    height, width = prepared.pixels.shape[:2]
    mask = F.interpolate(_to_unit_range(relevance)[None], size=(height, width), mode="bilinear")[0, 0]
    return show_cam_on_image(prepared.pixels, mask.numpy(), use_rgb=True)


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
    name, layer = resolve_layer(checkpoint.model, layer_name)
    prepared = prepare(checkpoint, image)
    cam, features, logits = _grad_cam_pass(checkpoint, prepared, layer, class_index, condition)
    return FeatureViews(
        layer=name,
        shape=tuple(features.shape),
        channels=channel_grid(features),
        pca=pca_rgb(features),
        cam=cam,
        rollout=attention_rollout(checkpoint, prepared),
        logits=logits,
    )
