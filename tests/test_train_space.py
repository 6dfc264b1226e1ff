"""python -m train --push-to-hub --demo-space: the run is pushed, its card links the Space, and the Space serves it."""

import pytest
import yaml

from tests.test_hub_push import online_in_this_process, stand_in  # noqa: F401 (fixture, which hub uses)
from tests.test_space import hub  # noqa: F401 (fixture)
from tests.test_train import classes_dir  # noqa: F401 (fixture)
from tests.test_train_push import head_only_argv
from train.__main__ import main


@pytest.fixture
def online_for_children(hub, monkeypatch):  # noqa: F811 (fixture)
    """The stand-in, for this process (where train pushes the run and publishes its Space) and any it starts."""
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with online_in_this_process(hub):
        yield hub


def test_demo_space_publishes_the_pushed_model_in_a_space_linked_from_its_card(
    tiny_checkpoints,
    classes_dir,
    online_for_children,
    tmp_path,  # noqa: F811 (fixture)
):
    run_dir = tmp_path / "run"
    argv = head_only_argv(
        tiny_checkpoints,
        classes_dir,
        run_dir,
        push_to_hub=True,
        hub_model_id="me/squares",
        demo_space="me/squares-demo",
    )
    assert main(argv) == 0
    hub = online_for_children
    card = hub.file("me/squares", "README.md").decode()
    assert "[me/squares-demo](https://huggingface.co/spaces/me/squares-demo)" in card
    app = hub.file("me/squares-demo", "app.py", kind="spaces").decode()
    assert "food_model='me/squares'" in app
    readme = hub.file("me/squares-demo", "README.md", kind="spaces").decode()
    assert yaml.safe_load(readme.split("---")[1])["models"] == ["me/squares"]
    assert (tmp_path / "run-space" / "app.py").is_file()
    assert not any("space" in name for name in hub.repos["me/squares"].commit("main").files)


def test_demo_space_without_a_push_stops_before_training(tiny_checkpoints, classes_dir, tmp_path, capsys):  # noqa: F811
    run_dir = tmp_path / "run"
    assert main(head_only_argv(tiny_checkpoints, classes_dir, run_dir, demo_space="me/squares-demo")) == 2
    assert "--demo-space needs --push-to-hub" in capsys.readouterr().err
    assert not run_dir.exists()
