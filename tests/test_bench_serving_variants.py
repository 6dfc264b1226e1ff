"""bench.serving_variants builds each way of serving a checkpoint into a pixel_values -> logits callable."""

import re

import pytest
import torch

from bench import serving_variants
from hub import load_checkpoint

# torch.compile needs a C++ toolchain and minutes; ONNX Runtime is not a dependency of the project.
FAST_VARIANTS = ["eager-attention", "sdpa", "torchscript", "export", "bf16", "bf16-torchscript", "int8"]


@pytest.fixture(scope="module")
def tiny_vit(tiny_checkpoints):
    return load_checkpoint(str(tiny_checkpoints[("vit", "classification")]))


def test_every_variant_gives_logits_of_the_model_s_shape(tiny_vit):
    variants = serving_variants.build_variants(tiny_vit, FAST_VARIANTS)
    pixel_values = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        expected = tiny_vit.model(pixel_values=pixel_values).logits
    for name, predict in variants.items():
        with torch.inference_mode():
            logits = predict(pixel_values)
        assert logits.shape == expected.shape, name
        assert logits.dtype == torch.float32, name


def test_int8_quantises_the_linear_layers_of_a_copy(tiny_vit):
    predict = serving_variants.int8_dynamic(tiny_vit, example=None)
    float_linears = sum(isinstance(m, torch.nn.Linear) for m in tiny_vit.model.modules())
    int8_linears = [m for m in predict.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(int8_linears) == float_linears > 0
    assert all(m.weight().dtype == torch.qint8 for m in int8_linears)
    assert not any(isinstance(m, torch.nn.Linear) for m in predict.modules())
    assert not any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in tiny_vit.model.modules())  # a copy


def test_agreement_counts_every_photo_and_the_float_model_agrees_with_itself(tiny_vit, tmp_path, photo, capsys):
    for i in range(3):
        photo.rotate(90 * i).save(tmp_path / f"photo{i}.png")
    variants = serving_variants.build_variants(tiny_vit, ["sdpa", "int8"])
    serving_variants.agreement(tiny_vit, variants, tmp_path)
    out = capsys.readouterr().out
    assert re.search(r"^sdpa +top-1 agreement with float sdpa 3/3 \(100\.0%\)$", out, re.M), out
    assert re.search(r"^int8 +top-1 agreement with float sdpa [0-3]/3 ", out, re.M), out


def test_an_unknown_variant_is_refused():
    with pytest.raises(SystemExit):
        serving_variants.parse_args(["--variants", "sdpa,fp4"])
