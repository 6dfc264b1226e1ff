"""bench.serving_variants builds each way of serving a checkpoint into a pixel_values -> logits callable."""

import re

import pytest
import torch

from bench import serving_variants
from hub import load_checkpoint

# torch.compile takes seconds a model (tests/test_demos_inference.py checks it); ONNX Runtime is not a dependency.
FAST_VARIANTS = ["eager-attention", "fp32", "export", "bf16", "int8"]


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


def test_bf16_and_int8_compute_in_those_precisions(tiny_vit):
    variants = serving_variants.build_variants(tiny_vit, ["fp32", "bf16", "int8"])
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in variants["int8"].modules())
    pixel_values = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        fp32, bf16 = variants["fp32"](pixel_values), variants["bf16"](pixel_values)
    torch.testing.assert_close(bf16, fp32, rtol=0, atol=0.03)
    assert not torch.equal(bf16, fp32), "bf16 rounds"
    assert {p.dtype for p in tiny_vit.model.parameters()} == {torch.float32}, "the model itself stays fp32"


def test_a_compiled_variant_that_cannot_be_had_is_left_out_saying_so(tiny_vit, capsys):
    variants = serving_variants.build_variants(tiny_vit, ["compiled-fp32", "fp32"])  # compiling is off in tests
    assert list(variants) == ["fp32"]
    out = capsys.readouterr().out
    assert "predictions run uncompiled (TORCH_COMPILE_DISABLE" in out
    assert re.search(r"^compiled-fp32 +left out$", out, re.M), out


def save_photos(photo, folder, count=3):
    for i in range(count):
        photo.rotate(90 * i).save(folder / f"photo{i}.png")


def test_agreement_counts_every_photo_and_the_float_model_agrees_with_itself(tiny_vit, tmp_path, photo, capsys):
    save_photos(photo, tmp_path)
    variants = serving_variants.build_variants(tiny_vit, ["fp32", "int8"])
    serving_variants.agreement(tiny_vit, variants, tmp_path)
    out = capsys.readouterr().out
    assert re.search(r"^fp32 +top-1 agreement with the fp32 model 3/3 \(100\.0%\)$", out, re.M), out
    assert re.search(r"^int8 +top-1 agreement with the fp32 model [0-3]/3 ", out, re.M), out


def test_a_regressor_s_agreement_is_its_outputs_difference_in_its_unit(tiny_checkpoints, tmp_path, photo, capsys):
    checkpoint = load_checkpoint(str(tiny_checkpoints[("resnet", "regression")]))
    save_photos(photo, tmp_path)
    variants = serving_variants.build_variants(checkpoint, ["fp32", "int8"])
    serving_variants.agreement(checkpoint, variants, tmp_path)
    out = capsys.readouterr().out
    outputs = checkpoint.model.config.num_labels
    head = rf"\|difference\| from the fp32 model over 3 images x {outputs} outputs, in {checkpoint.task.unit}: "
    assert re.search(rf"^fp32 +{head}mean 0\.000, max 0\.000$", out, re.M), out
    mean, largest = map(float, re.search(rf"^int8 +{head}mean ([\d.]+), max ([\d.]+)$", out, re.M).groups())
    assert mean <= largest < 0.1, "int8 stays close to fp32 on the tiny model"


def test_an_unknown_variant_is_refused():
    with pytest.raises(SystemExit):
        serving_variants.parse_args(["--variants", "fp32,fp4"])
