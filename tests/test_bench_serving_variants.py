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


# How far each variant's logits may be from the eager fp32 model's: the fp32 ones compute the same thing (in
# another order, or as a traced graph); bf16 and int8 round (measured: 0.0005 and 0.0015 on the tiny ViT).
TOLERANCE = {"eager-attention": 1e-5, "fp32": 1e-5, "export": 1e-5, "bf16": 0.005, "int8": 0.01}


def test_every_variant_gives_the_model_s_logits(tiny_vit):
    """Each variant computes the model's own logits for an image, to its precision."""
    variants = serving_variants.build_variants(tiny_vit, FAST_VARIANTS)
    assert list(variants) == FAST_VARIANTS
    pixel_values = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = tiny_vit.model(pixel_values=pixel_values).logits
        another_image = tiny_vit.model(pixel_values=torch.zeros_like(pixel_values)).logits
    assert (another_image - expected).abs().max() > 5 * max(TOLERANCE.values()), "the tolerances tell images apart"
    for name, predict in variants.items():
        with torch.inference_mode():
            logits = predict(pixel_values)
        assert logits.shape == expected.shape and logits.dtype == torch.float32, name
        torch.testing.assert_close(
            logits, expected, rtol=0, atol=TOLERANCE[name], msg=lambda m, name=name: f"{name}: {m}"
        )


def test_bf16_and_int8_compute_in_those_precisions(tiny_vit):
    variants = serving_variants.build_variants(tiny_vit, ["fp32", "bf16", "int8"])
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in variants["int8"].modules())
    pixel_values = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        fp32, bf16 = variants["fp32"](pixel_values), variants["bf16"](pixel_values)
    torch.testing.assert_close(bf16, fp32, rtol=0, atol=TOLERANCE["bf16"])
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
