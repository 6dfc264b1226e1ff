"""The demo app served in-process on tiny checkpoints, driven through gradio_client like any API user."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from demos import app as demo_app
from demos import models as demo_models
from demos.examples import made_up_pictures
from demos.explaining import explain, summary
from demos.explaining.explain import prepare
from demos.serving.images import load_image
from demos.serving.inference import regress, top_k
from demos.serving.sessions import MAX_MODEL_MB, VisitorLimits
from demos.tabs import food, model_info
from hub.checkpoint import builtin_aliases
from tests.serving import free_port, serving
from tests.test_demos_images import cat_photo, not_an_image, png_bomb, truncated_png, xray_16bit, xray_dicom
from tests.tiny_checkpoints import LABELS


@pytest.fixture(scope="module")
def served(tiny_checkpoints):
    """(client, models) for an app with a ViT food classifier and a ResNet bone-age regressor."""
    # The Model tab may load the tiny checkpoints' folders (by default a visitor loads no folder at all).
    with serving(tiny_checkpoints, allow_local_dirs=[tiny_checkpoints[("vit", "classification")].parent]) as app:
        yield Client(app.url, verbose=False), app.models


@pytest.fixture
def cat_file(tmp_path):
    return cat_photo(tmp_path / "cat.png")


def test_the_named_endpoints_are_public(served):
    client, _ = served
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/classify", "/bone_age", "/feature_maps", "/load_model"} <= set(endpoints)


def test_classify_returns_the_models_top_labels(served, cat_file):
    client, models = served
    result = client.predict(handle_file(cat_file), api_name="/classify")
    expected = top_k(models.get("food"), load_image(cat_file))
    assert result["label"] == next(iter(expected))
    assert {c["label"]: c["confidence"] for c in result["confidences"]} == pytest.approx(expected)


@pytest.mark.parametrize("make", [cat_photo, xray_16bit, xray_dicom], ids=["photo", "16-bit png", "dicom"])
def test_bone_age_gives_months_years_and_a_cam(served, tmp_path, make):
    client, models = served
    upload = make(tmp_path / ("upload.dcm" if make is xray_dicom else "upload.png"))
    months, text, overlay, decoded = client.predict(handle_file(upload), api_name="/bone_age")
    assert months == pytest.approx(regress(models.get("boneage"), load_image(upload)), abs=1e-4)
    assert f"{months:.1f} months" in text and f"{months / 12:.1f} years" in text
    assert "Uncertainty: not stated" in text  # the tiny checkpoint's card declares no MAE
    height, width = prepare(models.get("boneage"), load_image(upload)).pixels.shape[:2]
    assert Image.open(overlay).size == (width, height)  # the CAM lies on exactly what the model saw
    assert Image.open(decoded).size == load_image(upload).size and np.asarray(Image.open(decoded)).std() > 0


def test_bone_age_sends_the_number_before_the_images(served, tmp_path):
    """The visitor reads the number while the Grad-CAM's backward pass runs; `predict` gets the complete answer."""
    client, _ = served
    job = client.submit(handle_file(xray_16bit(tmp_path / "hand.png")), api_name="/bone_age")
    first, last = list(job)
    months, text, overlay, decoded = first
    assert f"{months:.1f} months" in text and overlay is None and decoded is None
    assert last[:2] == (months, text) and Image.open(last[2]).size and Image.open(last[3]).size


def test_exif_orientation_is_honoured_end_to_end(served, tmp_path):
    client, _ = served
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, "rotate 90 degrees to display", as phones write portrait shots
    Image.new("RGB", (60, 20), (90, 90, 90)).save(tmp_path / "portrait.jpg", exif=exif)
    *_, decoded = client.predict(handle_file(tmp_path / "portrait.jpg"), api_name="/bone_age")
    assert Image.open(decoded).size == (20, 60)


def test_examples_folder_adds_examples_to_the_food_tab(tiny_checkpoints, tmp_path):
    cat_photo(tmp_path / "pie.png")
    (tmp_path / "notes.txt").write_text("not an example")
    models = demo_app.load_models(
        str(tiny_checkpoints[("vit", "classification")]), str(tiny_checkpoints[("vit", "regression")]), tmp_path
    )
    demo = demo_app.build_app(models=models)
    datasets = [c for c in demo.config["components"] if c["type"] == "dataset"]
    made_up = len(made_up_pictures())  # the pictures the app makes itself follow the folder's
    assert len(datasets) == 1 and len(datasets[0]["props"]["samples"]) == 1 + made_up


def test_feature_maps_for_a_vit_include_attention_rollout(served, cat_file):
    client, _ = served
    channels, pca, cam, rollout, caption = client.predict(
        handle_file(cat_file), "food", "block 1", "banana", api_name="/feature_maps"
    )
    assert "block 1" in caption and "4x4 grid" in caption  # 32 px / 8 px patches, from the config
    for path in (channels, pca, cam, rollout):
        assert Image.open(path).mode in ("RGB", "RGBA")


def test_feature_maps_for_a_cnn_have_no_rollout(served, cat_file):
    client, _ = served
    channels, pca, cam, rollout, caption = client.predict(
        handle_file(cat_file), "boneage", "stage 1", "", api_name="/feature_maps"
    )
    assert rollout is None and "no attention rollout" in caption and "stage 1" in caption
    assert Image.open(cam).size == (32, 32)


def test_feature_maps_unknown_layer_lists_the_choices(served, cat_file):
    client, _ = served
    with pytest.raises(AppError, match="stage 1, stage 2"):
        client.predict(handle_file(cat_file), "boneage", "block 7", "", api_name="/feature_maps")


@pytest.mark.parametrize(
    "make, message",
    [(not_an_image, "not an image"), (truncated_png, "truncated"), (png_bomb, "decompression bomb")],
    ids=["not an image", "truncated", "bomb"],
)
@pytest.mark.parametrize("endpoint", ["/classify", "/bone_age"])
def test_bad_uploads_get_a_clear_error_and_the_app_keeps_serving(served, tmp_path, cat_file, make, message, endpoint):
    client, _ = served
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(make(tmp_path / "upload.jpg")), api_name=endpoint)
    assert client.predict(handle_file(cat_file), api_name="/classify")["label"]


def test_upload_over_the_cap_is_refused(served, tmp_path, cat_file):
    client, _ = served
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\0" * (21 * 1024 * 1024))  # MAX_FILE_SIZE is 20mb
    with pytest.raises(Exception, match="exceeds the maximum file size of 20971520 bytes"):
        client.predict(handle_file(huge), api_name="/classify")
    assert client.predict(handle_file(cat_file), api_name="/classify")["label"]


def test_the_start_runs_no_model_and_imports_no_explanation_or_training_package(tiny_checkpoints):
    """What made the start slow and big: the Model tab's layer table ran the model while the app was built, and
    pytorch-grad-cam (with OpenCV, scikit-learn, SciPy) and Triton came in with the app. Each is now made or imported
    by the first request that needs it, or never (Triton); the training packages never come in with serving."""
    models = demo_app.load_models(
        *(str(tiny_checkpoints[key]) for key in [("vit", "classification"), ("resnet", "regression")])
    )
    demo_app.build_app(models=models)
    assert all(models.get(name).model not in summary._TABLES for name in models.names())
    summary.readable_layer_table(models.get("food"))
    assert models.get("food").model in summary._TABLES
    # (accelerate is not among them: transformers' modelling code imports it wherever it is installed.) Triton, which
    # torch.compile would import for GPU kernels, is marked absent (demos/__init__.py): None in sys.modules.
    heavy = ("pytorch_grad_cam", "sklearn", "cv2", "datasets", "tensorboard", "triton")
    code = f"import sys, demos.app; print(sorted(name for name in {heavy!r} if sys.modules.get(name) is not None))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


def test_model_tab_loads_a_folder_and_explains_an_offline_hub_id(served, tiny_checkpoints):
    client, _ = served
    folder = str(tiny_checkpoints[("timm", "regression")])  # under the allowed root (see `served`)
    _, description, table = client.predict(folder, api_name="/load_model")
    assert "regression: bone age in months" in description and "TimmWrapperForImageClassification" in description
    assert table["headers"] == ["layer", "type", "output shape", "parameters", "trainable"]
    offered = client.predict(api_name="/feature_models")["choices"]  # the Feature maps tab offers it too
    assert [folder, folder] in offered
    # What a visitor can do instead: not "give its folder", which this tab may refuse.
    with pytest.raises(AppError, match="not on this server, and the hub cannot be reached") as refused:
        client.predict("someone/not-cached-model", api_name="/load_model")
    assert "folder instead" not in str(refused.value) and "efficientnet-lite0" in str(refused.value)


def test_the_model_lists_show_the_checkpoints_names_and_take_their_roles(served):
    """The lists say "food10" as the captions do (here the tiny checkpoints' folder names); the API takes "food"."""
    client, models = served
    shown = {value: label for label, value in client.predict(api_name="/model_names")["choices"]}
    assert shown["food"] == models.get("food").name and shown["boneage"] == models.get("boneage").name
    assert shown["food"] != "food"
    assert client.predict("food", api_name="/model_summary")[0].startswith(f"**{models.get('food').name}**")


def test_missing_shipped_checkpoint_falls_back_to_the_default_backbone_and_says_so(monkeypatch, tmp_path):
    monkeypatch.setitem(demo_models.SHIPPED_CHECKPOINTS, "food10", tmp_path / "food10")
    ref, note = demo_models.default_ref("food")
    assert ref == "efficientnet-lite0" and "ImageNet" in note and str(tmp_path / "food10") in note


def test_share_without_network_says_why_and_keeps_serving(tiny_checkpoints, monkeypatch, capsys, cat_file):
    import gradio.networking

    monkeypatch.setattr(gradio.networking, "GRADIO_API_SERVER", "http://127.0.0.1:9/unreachable")  # as offline
    models = demo_app.load_models(
        str(tiny_checkpoints[("timm", "classification")]), str(tiny_checkpoints[("timm", "regression")])
    )
    demo = demo_app.build_app(models=models)
    try:
        url, share_url = demo_app.launch(demo, port=free_port(), share=True, prevent_thread_lock=True)
        assert share_url is None
        assert "No public link was made" in capsys.readouterr().out
        assert Client(url, verbose=False).predict(handle_file(cat_file), api_name="/classify")["label"]
    finally:
        demo.close()


def test_cli_defaults_and_a_clear_exit_on_bad_arguments(tiny_checkpoints, tmp_path):
    from demos.__main__ import main, parse_args

    args = parse_args([])
    assert (args.port, args.share, args.food_model, args.boneage_model, args.examples) == (
        7860,
        False,
        None,
        None,
        None,
    )
    with pytest.raises(SystemExit, match="no such folder"):
        main(["--examples", str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="not a checkpoint folder"):
        main(
            ["--food-model", str(tmp_path / "nowhere"), "--boneage-model", str(tiny_checkpoints[("vit", "regression")])]
        )


def test_choosing_another_model_offers_its_layers_and_target(served):
    client, _ = served
    layers, target = client.predict("boneage", api_name="/feature_layers")
    assert [choice[0] for choice in layers["choices"]] == ["stage 1", "stage 2"] and layers["value"] == "stage 2"
    assert target["value"] == "regression output"
    layers, target = client.predict("food", api_name="/feature_layers")
    assert layers["value"] == "block 2" and [choice[1] for choice in target["choices"]] == ["top prediction", *LABELS]


def test_concurrent_feature_map_requests_each_get_their_own_layer(served, cat_file):
    client, _ = served
    # Four visitors, each from an address of its own (as a share link's tunnel names them): one client may hold only
    # demos.guards.queue_limits.MAX_EXPENSIVE_JOBS_PER_CLIENT feature maps at once.
    visitors = [Client(client.src, verbose=False, headers={"X-Forwarded-For": f"10.0.9.{i}"}) for i in range(4)]
    jobs = [
        visitor.submit(handle_file(cat_file), "boneage", layer, "", api_name="/feature_maps")
        for visitor, layer in zip(visitors, ("stage 1", "stage 2", "stage 1", "stage 2"))
    ]
    captions = [job.result()[-1] for job in jobs]
    assert ["8x8 grid" in c for c in captions] == [True, False, True, False]
    assert ["4x4 grid" in c for c in captions] == [False, True, False, True]


def test_bone_age_states_the_cards_validation_mae_as_uncertainty(tiny_checkpoints, tmp_path):
    import shutil

    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from demos.tabs.bone_age import describe_prediction

    folder = shutil.copytree(tiny_checkpoints[("resnet", "regression")], tmp_path / "boneage")
    mae = EvalResult(
        task_type="image-classification", dataset_type="imagefolder", dataset_name="boneage",
        metric_type="mae", metric_value=9.4,
    )  # fmt: skip
    card_data = ModelCardData(model_name="boneage", eval_results=[mae])
    ModelCard(f"---\n{card_data.to_yaml()}\n---\n# boneage\n").save(folder / "README.md")
    text = describe_prediction(demo_models.load_model(str(folder)), torch.tensor([150.0]))
    assert "150.0 months" in text and "12.5 years" in text
    assert "± 9.4 months, the validation MAE stated in the model card" in text


@pytest.mark.parametrize("offline", ["1", "0"])
def test_the_load_box_says_what_a_visitor_can_load(monkeypatch, tmp_path, offline):
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    without_folders, with_folders = (
        model_info.what_loads(VisitorLimits()),
        model_info.what_loads(VisitorLimits(allowed_local_dirs=(tmp_path,))),
    )
    aliases = f"one of the aliases {', '.join(builtin_aliases())}"
    if offline == "1":
        assert without_folders.startswith(f"The hub cannot be reached from this server: load {aliases}.")
    else:
        assert without_folders.startswith(f"Load a hub id (owner/name) up to {MAX_MODEL_MB:g} MB, or {aliases}.")
    assert f"{aliases}, or a checkpoint folder this server allows." in with_folders
    assert ", (" not in without_folders + with_folders


def test_a_picture_under_32_px_on_a_side_is_warned_about_and_a_photo_is_not_offered_dicom():
    assert "only 1x1 pixels" in food.too_small((1, 1)) and food.too_small((31, 500))
    assert food.too_small((32, 32)) == ""
    refusal = food.photo_refusal(
        "notes.jpg is not an image that can be read: upload a PNG, JPEG, WebP, BMP, TIFF or DICOM (.dcm) file."
    )
    assert refusal == "notes.jpg is not an image that can be read: upload a photo (PNG, JPEG, WebP, BMP or TIFF)."


def test_channel_labels_lie_under_the_tiles_not_on_them():
    """On a 4x4 map a label on the tile hid its bottom row of cells: each tile is shown whole, all white here."""
    features = torch.ones(4, 4, 4)
    features[:, 0, 0] = 0  # each channel: black in its top-left cell, white elsewhere
    grid = explain.channel_grid(features, count=4)
    side = explain.DISPLAY_PX // 2
    tile = grid[2 : 2 + side, 2 : 2 + side]
    assert (tile[side // 4 :] == 255).all() and (tile[: side // 4, : side // 4] == 0).all()
