"""What a newcomer reads in the demo: human labels, the out-of-distribution notice, the rendered model card,
the sex selector of a sex-conditioned bone-age model (through gradio_client), and a start-up log that names --share.
"""

import json
import shutil

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from huggingface_hub import ModelCard, ModelCardData
from PIL import Image
from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

from demos import app as demo_app
from demos import models as demo_models
from demos.explaining.explain import grad_cam
from demos.explaining.summary import card_text, human_label, label_names
from demos.serving.images import load_image
from demos.serving.inference import predicted_logits, top_k
from demos.tabs import food
from tests.serving import serving
from tests.test_demos_images import cat_photo, xray_16bit


def with_config(folder, out, **entries):
    """A copy of a checkpoint folder with `entries` added to its config.json."""
    shutil.copytree(folder, out)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, **entries}))
    return out


def sex_conditioned_boneage(out):
    """A tiny random ResNet bone-age regressor with one output per sex, as the checkpoint contract states it."""
    torch.manual_seed(0)
    config = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=2,
        problem_type="regression", id2label={0: "bone age (female)", 1: "bone age (male)"},
        label2id={"bone age (female)": 0, "bone age (male)": 1}, target_name="bone age", target_unit="months",
        condition_column="male", condition_outputs={"false": 0, "true": 1},
    )  # fmt: skip
    ResNetForImageClassification(config).save_pretrained(out)
    ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875).save_pretrained(out)
    return out


@pytest.mark.parametrize(
    "label, shown",
    [("bread_pudding", "Bread pudding"), ("goldfish, Carassius auratus", "Goldfish, Carassius auratus"), ("", "")],
)
def test_class_names_are_shown_as_human_labels(label, shown):
    assert human_label(label) == shown


def test_out_of_distribution_notice_uses_the_stored_threshold(tiny_checkpoints, tmp_path):
    photo = load_image(cat_photo(tmp_path / "cat.png"))
    plain = demo_models.load_model(str(tiny_checkpoints[("vit", "classification")]))
    scores = top_k(plain, photo)
    best = next(iter(scores))
    assert food.verdict(plain, scores) == (food.SCORES_TITLE, "")  # no threshold stored: nothing is claimed
    assert "stores no threshold" in food.knowledge(plain)

    above_best = scores[best] + 0.01  # the photo's best score falls short of it: the notice
    strict = demo_models.load_model(
        str(with_config(tiny_checkpoints[("vit", "classification")], tmp_path / "strict", ood_threshold=above_best))
    )
    title, notice = food.verdict(strict, scores)
    assert title == food.NO_FIT_TITLE and "fits none of the 3 classes" in notice
    assert f"{human_label(best)}, scores {scores[best]:.0%}, below the {above_best:.0%}" in notice
    assert f"below **{above_best:.0%}**" in food.knowledge(strict)

    lenient = demo_models.load_model(
        str(with_config(tiny_checkpoints[("vit", "classification")], tmp_path / "lenient", ood_threshold=scores[best]))
    )
    assert food.verdict(lenient, scores) == (food.SCORES_TITLE, "")  # reaching the threshold passes


def test_the_model_tab_quotes_each_class_name(tiny_checkpoints):
    checkpoint = demo_models.load_model(str(tiny_checkpoints[("vit", "classification")]))
    assert label_names(checkpoint) == "`apple`, `banana`, `cherry`"
    assert label_names(checkpoint, limit=2) == "`apple`, `banana`, … (3 in all)"


def test_model_card_is_rendered_without_metadata_and_names_its_local_images(tiny_checkpoints, tmp_path):
    folder = shutil.copytree(tiny_checkpoints[("resnet", "regression")], tmp_path / "carded")
    body = "# boneage\n\nMAE 12.3 months.\n\n![Predicted vs true](predicted_vs_true.png)\n"
    ModelCard(f"---\n{ModelCardData(license='other').to_yaml()}\n---\n{body}").save(folder / "README.md")
    text = card_text(demo_models.load_model(str(folder)))
    assert text.startswith("# boneage") and "license" not in text
    assert "*(Predicted vs true: the image predicted_vs_true.png in the checkpoint folder)*" in text
    assert card_text(demo_models.load_model(str(tiny_checkpoints[("resnet", "classification")]))) is None


@pytest.fixture(scope="module")
def conditioned(tiny_checkpoints, tmp_path_factory):
    """(client, models, demo config) of an app whose bone-age model has a female and a male output."""
    boneage = sex_conditioned_boneage(tmp_path_factory.mktemp("conditioned") / "boneage")
    with serving(tiny_checkpoints, boneage=boneage) as app:
        yield Client(app.url, verbose=False), app.models, app.demo.config


def test_sex_selector_picks_the_output_of_a_conditioned_bone_age_model(conditioned, tmp_path):
    client, models, config = conditioned
    xray = xray_16bit(tmp_path / "hand.png")
    female, male = predicted_logits(models.get("boneage"), load_image(xray)).tolist()
    assert female != pytest.approx(male, abs=0.05)  # so that the three answers below tell the outputs apart

    months, text, _, _ = client.predict(handle_file(xray), "female", api_name="/bone_age")
    assert months == pytest.approx(female, abs=1e-4) and "For a girl: the model's female output" in text
    months, text, _, _ = client.predict(handle_file(xray), "male", api_name="/bone_age")
    assert months == pytest.approx(male, abs=1e-4) and "For a boy" in text
    months, text, overlay, _ = client.predict(handle_file(xray), api_name="/bone_age")  # the default: unknown
    assert months == pytest.approx((female + male) / 2, abs=1e-4)
    assert f"Sex unknown: the mean of the model's female and male outputs (female {female:.1f}, male {male:.1f}" in text
    # The overlay is the Grad-CAM of the mean of both outputs (served as lossy JPEG: compared on average), not of one.
    served = np.asarray(Image.open(overlay).convert("RGB"), dtype=np.float64)
    cams = {
        which: grad_cam(models.get("boneage"), load_image(xray), condition=which) for which in (None, "false", "true")
    }
    distance = {which: np.abs(served - cam).mean() for which, cam in cams.items()}
    assert served.shape == cams[None].shape and distance[None] < 12, distance  # the lossy format costs a few levels
    assert distance[None] < min(distance["false"], distance["true"]), distance
    selector = next(c for c in config["components"] if c["props"].get("elem_id") == "boneage-sex")
    assert selector["props"]["visible"] is True and selector["props"]["value"] == "unknown"


def test_an_unknown_sex_runs_the_model_once_for_the_answer_and_both_outputs(conditioned, tmp_path, monkeypatch):
    client, models, _ = conditioned
    boneage = models.get("boneage")
    passes = []
    predictor = boneage.predictor
    monkeypatch.setattr(boneage, "predictor", lambda: passes.append(1) or predictor())
    _, text, _, _ = client.predict(handle_file(xray_16bit(tmp_path / "hand.png")), api_name="/bone_age")
    assert "Sex unknown: the mean of the model's female and male outputs (female" in text
    assert len(passes) == 1  # the Grad-CAM runs on the explanation copy, not through the predictor


def test_sex_outside_the_choices_is_a_readable_error(conditioned, tmp_path):
    from gradio_client.exceptions import AppError

    client, _, _ = conditioned
    with pytest.raises(AppError, match="(?i)sex must be one of: female, male, unknown"):
        client.predict(handle_file(xray_16bit(tmp_path / "hand.png")), "boy", api_name="/bone_age")


def test_start_up_log_points_to_the_share_flag(tiny_checkpoints, capsys):
    models = demo_app.load_models(
        str(tiny_checkpoints[("timm", "classification")]), str(tiny_checkpoints[("timm", "regression")])
    )
    demo = demo_app.build_app(models=models)
    try:
        url, _ = demo_app.launch(demo, prevent_thread_lock=True)  # Gradio picks a free port
    finally:
        demo.close()
    log = capsys.readouterr().out
    assert f"Running on {url}" in log and "python -m demos --share" in log and "share=True" not in log
