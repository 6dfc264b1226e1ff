"""The app's smaller endpoints (Model tab, "What the network sees" choices) and bad arguments to the bigger ones,
called through gradio_client like any API user. Messages change with the UI: these check behaviour (an error,
and what it names), not wording."""

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from transformers import AutoModelForImageClassification

from demos.explaining.pixel_space import MAX_STEPS
from demos.explaining.summary import human_label
from demos.models import load_model
from demos.serving.images import load_image
from demos.serving.inference import top_k
from tests.test_demos_images import cat_photo
from tests.test_dream_and_adversarial_app import client  # noqa: F401 (the same served app, a fixture)
from tests.tiny_checkpoints import LABELS


@pytest.fixture(scope="module")
def cat_file(tmp_path_factory):
    return cat_photo(tmp_path_factory.mktemp("uploads") / "cat.png")


def choice_values(dropdown: dict) -> list[str]:
    """The values (not the shown labels) of a Dropdown update returned by an endpoint."""
    return [value for _, value in dropdown["choices"]]


# The served models (tests/serving.py) and the task facts each one's summary must state.
SERVED = {
    "food": (("vit", "classification"), ["classification", "3 classes", "`apple`", "`banana`", "`cherry`"]),
    "boneage": (("resnet", "regression"), ["regression", "bone age", "months"]),
}


@pytest.mark.parametrize("name", ["food", "boneage"])
def test_model_summary_describes_the_chosen_model_and_tables_its_layers(client, tiny_checkpoints, name):
    """The summary states the model's class, task, input size and parameter count, counted here with transformers."""
    key, task_facts = SERVED[name]
    model = AutoModelForImageClassification.from_pretrained(tiny_checkpoints[key])
    total = sum(parameter.numel() for parameter in model.parameters())
    description, table = client.predict(name, api_name="/model_summary")
    task_line = next(line for line in description.splitlines() if "task" in line)
    assert all(fact in task_line for fact in task_facts), task_line
    assert type(model).__name__ in description and "32x32" in description
    assert f"{total:,} ({total:,} trainable)" in description
    # One row per module: the whole model first (every parameter, the logits' shape), then its parts by name.
    rows = [dict(zip(table["headers"], row)) for row in table["data"]]
    assert rows[0]["type"] == type(model).__name__ and rows[0]["output shape"] == f"[1, {model.config.num_labels}]"
    assert int(str(rows[0]["parameters"]).replace(",", "")) == total
    assert {name for name, _ in model.named_children()} <= {row["layer"] for row in rows}


def test_the_two_models_get_different_summaries(client):
    assert client.predict("food", api_name="/model_summary") != client.predict("boneage", api_name="/model_summary")


def test_model_summary_of_an_unknown_model_is_an_error_naming_it(client):
    with pytest.raises(AppError, match="durian-net"):
        client.predict("durian-net", api_name="/model_summary")


@pytest.mark.parametrize("ref", ["", "   "])
def test_load_model_with_an_empty_box_is_an_error(client, ref):
    with pytest.raises(AppError):
        client.predict(ref, api_name="/load_model")
    description, _ = client.predict("food", api_name="/model_summary")  # the app keeps serving
    assert description


def test_network_sees_offers_the_classifiers_only(client):
    choices = choice_values(client.predict(api_name="/network_sees_models"))
    assert "food" in choices and "boneage" not in choices  # a regression model has no class to visualise


def test_network_sees_classes_are_the_models_labels(client):
    dream_classes, attack_targets = client.predict("food", api_name="/network_sees_classes")
    assert choice_values(dream_classes) == list(LABELS) and dream_classes["value"] in LABELS
    assert set(LABELS) < set(choice_values(attack_targets))  # plus "any other class"
    assert attack_targets["value"] not in LABELS


def test_network_sees_classes_of_an_unknown_model_is_an_error_naming_it(client):
    with pytest.raises(AppError, match="durian-net"):
        client.predict("durian-net", api_name="/network_sees_classes")


def test_feature_maps_for_an_unknown_class_is_an_error_naming_it(client, cat_file):
    with pytest.raises(AppError, match="durian"):
        client.predict(handle_file(cat_file), "food", "", "durian", api_name="/feature_maps")


def test_feature_maps_for_a_known_class_explain_that_class(client, tiny_checkpoints, cat_file):
    """The caption names the layer's channels and the class Grad-CAM explains, with the model's own probability."""
    probabilities = top_k(load_model(str(tiny_checkpoints[("vit", "classification")])), load_image(cat_file))
    top = next(iter(probabilities))
    other = next(label for label in LABELS if label != top)
    *_, caption = client.predict(handle_file(cat_file), "food", "", other, api_name="/feature_maps")
    assert "32 channels" in caption and "4x4" in caption  # the last ViT layer: 32 wide, 16 patches
    explains = next(line for line in caption.split(". ") if "Grad-CAM explains" in line)
    assert f"**{human_label(other)}** ({probabilities[other]:.0%})" in explains.split(";")[0]
    assert f"**{human_label(top)}** ({probabilities[top]:.0%})" in explains.split(";")[1], "the top one is named too"


@pytest.mark.parametrize(
    "arguments, named",
    [
        (("durian-net", "banana", None, 4, 0), "durian-net"),  # no such model
        (("food", "", None, 4, 0), None),  # no class chosen
        (("food", "banana", None, MAX_STEPS + 1, 0), str(MAX_STEPS)),  # over the step limit
        (("food", "banana", None, -3, 0), None),
        (("food", "banana", None, "ten", 0), "ten"),
        (("food", "banana", None, 4, 0.5), "0.5"),  # the seed is a whole number too
    ],
    ids=["unknown model", "no class", "too many steps", "negative steps", "steps not a number", "fractional seed"],
)
def test_dream_with_bad_arguments_is_an_error(client, arguments, named):
    with pytest.raises(AppError) as error:
        client.predict(*arguments, api_name="/dream")
    if named is not None:
        assert named in str(error.value)
