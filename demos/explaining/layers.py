"""What the explaining views need to know about a model's architecture, asked here once (as pytorch-grad-cam's
reshape_transforms.py keeps it in one module): which layers give feature maps, how a ViT's tokens lie on its patch
grid, which module Grad-CAM hooks for a block, and whether the model has attention weights to roll out.
"""

from __future__ import annotations

import torch

from hub import is_timm


def feature_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """{display name: module} of the stages (CNNs) or blocks (ViTs) whose outputs are feature maps."""
    if is_timm(model.config):  # timm declares its feature stages itself
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
    if is_timm(model.config):
        patch_embed = getattr(model.timm_model, "patch_embed", None)
        return tuple(patch_embed.grid_size) if patch_embed is not None else None
    config = model.config
    # Attention heads too: a ConvNeXt config also states a patch_size (its stem's stride) and an image_size.
    if all(hasattr(config, key) for key in ("patch_size", "image_size", "num_attention_heads")):
        side = config.image_size // config.patch_size
        return side, side
    return None


def has_attention_rollout(model: torch.nn.Module) -> bool:
    """Whether attention rollout applies: a transformers ViT (timm does not expose its attention weights)."""
    return token_grid(model) is not None and not is_timm(model.config)


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, N, D) tokens -> (B, D, rows, cols): the last rows*cols tokens are patches (CLS etc. come first)."""
    rows, cols = grid
    patches = tokens[:, -rows * cols :, :]
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], rows, cols)


def as_feature_map(output, grid: tuple[int, int] | None) -> torch.Tensor:
    """A layer's output (a tensor, or a tuple led by one) as (B, C, rows, cols): ViT tokens laid on their grid."""
    tensor = output[0] if isinstance(output, (tuple, list)) else output
    if tensor.ndim == 3:
        if grid is None:
            raise ValueError("This layer outputs tokens but the model states no patch grid.")
        return tokens_to_map(tensor, grid)
    return tensor


def cam_target_layer(layer: torch.nn.Module) -> torch.nn.Module:
    """The module Grad-CAM hooks to explain `layer`."""
    # A ViT's last block reaches the head only through the CLS token, so its patch tokens get no
    # gradient; the usual ViT Grad-CAM target is the normalised tokens entering the block instead.
    return getattr(layer, "layernorm_before", None) or getattr(layer, "norm1", None) or layer
