"""python -m train --push-to-hub: the finished run is published as one commit; a bad repo id stops before training."""

from tests.test_hub_push import FAKE_TOKEN, online, stand_in  # noqa: F401 (fixtures)
from tests.test_train import classes_dir, train_argv  # noqa: F401 (fixture)
from train.__main__ import main


def head_only_argv(tiny_checkpoints, classes_dir, run_dir, **options) -> list[str]:
    """The quickest whole run: one epoch of the tiny ViT's new head on cached features, then `options`."""
    model = tiny_checkpoints[("vit", "classification")]
    return train_argv(
        model=model, dataset=classes_dir, output_dir=run_dir, mode="feature-extraction", head_epochs=1, **options
    )


def test_push_to_hub_publishes_the_finished_run_with_its_card(tiny_checkpoints, classes_dir, online, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = head_only_argv(
        tiny_checkpoints, classes_dir, run_dir, push_to_hub=True, hub_model_id="me/squares", private=True
    )
    assert main(argv) == 0
    assert online.repos["me/squares"].private
    assert online.file("me/squares", "model.safetensors") == (run_dir / "model.safetensors").read_bytes()
    card = online.file("me/squares", "README.md").decode()
    assert 'model="me/squares"' in card  # the usage snippet loads the pushed repo
    output = capsys.readouterr()
    assert "Pushed" in output.out and FAKE_TOKEN not in output.out + output.err + card


def test_push_to_hub_without_a_repo_id_stops_before_training(tiny_checkpoints, classes_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(head_only_argv(tiny_checkpoints, classes_dir, run_dir, push_to_hub=True)) == 2
    assert "--hub-model-id" in capsys.readouterr().err
    assert not run_dir.exists()


def test_a_failed_push_keeps_the_trained_run_and_prints_the_retry(
    tiny_checkpoints, classes_dir, online, tmp_path, capsys
):
    online.fail_writes = 100  # every write answers 503
    run_dir = tmp_path / "run"
    argv = head_only_argv(tiny_checkpoints, classes_dir, run_dir, push_to_hub=True, hub_model_id="me/squares")
    assert main(argv) == 3
    error = capsys.readouterr().err
    assert f"python -m hub push {run_dir} me/squares" in error
    assert (run_dir / "model.safetensors").is_file() and (run_dir / "README.md").is_file()
