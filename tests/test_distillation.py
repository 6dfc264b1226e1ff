"""Distillation (`python -m train --teacher`): the blended loss, the teacher's view of each batch, a run that
distils end to end, and the teachers and runs it refuses."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812
from transformers.modeling_outputs import ImageClassifierOutput

from hub.cards import rerunnable_path
from hub.preprocessing import ImageSpec
from tests.test_train import classes_dir, read_json, train_argv  # noqa: F401 (fixtures)
from train.__main__ import main
from train.distillation import Teacher

STUDENT = ImageSpec(32, 32, "crop", 0.9, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic")
IMAGENET = ImageSpec(40, 40, "crop", 0.9, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), interpolation="bicubic")


class Recorder(nn.Module):
    """A 'model' that records the pixels it is given and answers fixed logits."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.answer, self.seen = logits, []

    def forward(self, pixel_values):
        self.seen.append(pixel_values)
        return ImageClassifierOutput(logits=self.answer.expand(len(pixel_values), -1))


def test_the_loss_blends_the_label_loss_with_the_tempered_kl_from_the_teacher():
    student, teacher_logits = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 3.0, 0.0]])
    label_loss = torch.tensor(0.7)
    teacher = Teacher(Recorder(teacher_logits), STUDENT, STUDENT, weight=0.25, temperature=2.0)

    p_teacher, p_student = F.softmax(teacher_logits / 2, -1), F.softmax(student / 2, -1)
    kl = (p_teacher * (p_teacher.log() - p_student.log())).sum()  # KL(teacher || student), summed over classes
    assert teacher.loss(label_loss, student, teacher_logits).item() == pytest.approx(0.75 * 0.7 + 0.25 * 4 * kl.item())
    assert teacher.loss(label_loss, teacher_logits, teacher_logits).item() == pytest.approx(0.75 * 0.7), (
        "a student that already answers as the teacher owes it nothing"
    )


def test_the_teacher_sees_the_students_batch_at_its_own_size_and_normalisation():
    recorder = Recorder(torch.zeros(1, 2))
    teacher = Teacher(recorder, IMAGENET, STUDENT, weight=0.5, temperature=1.0)
    grey = torch.full((2, 3, 32, 32), 0.2)  # the pixel value 0.6 under the student's (x - 0.5) / 0.5
    teacher.logits(grey)
    [seen] = recorder.seen
    assert seen.shape == (2, 3, 40, 40)
    expected = (0.6 - torch.tensor(IMAGENET.mean)) / torch.tensor(IMAGENET.std)
    assert torch.allclose(seen[0, :, 20, 20], expected, atol=1e-5)
    assert not recorder.training and not any(p.requires_grad for p in teacher.parameters())


@pytest.fixture(scope="module")
def trained_teacher(tiny_checkpoints, classes_dir, tmp_path_factory):  # noqa: F811
    """A tiny classifier of the drawn classes (its head trained on cached features), to teach with."""
    out = tmp_path_factory.mktemp("teacher") / "run"
    model = tiny_checkpoints[("timm", "classification")]
    assert main(train_argv(model=model, dataset=classes_dir, output_dir=out, mode="feature-extraction")) == 0
    return out


def test_a_distilled_run_asks_the_teacher_about_every_training_batch_and_says_so_on_its_card(
    tiny_checkpoints,
    classes_dir,
    trained_teacher,
    tmp_path,
    monkeypatch,  # noqa: F811
):
    batches, real_logits = [], Teacher.logits

    def counted_logits(self, pixels):
        batches.append(len(pixels))
        return real_logits(self, pixels)

    monkeypatch.setattr(Teacher, "logits", counted_logits)
    run_dir = tmp_path / "student"
    argv = train_argv(
        model=tiny_checkpoints[("timm", "classification")],
        dataset=classes_dir,
        output_dir=run_dir,
        mode="full",
        epochs=2,
        mixup=0.2,
        teacher=trained_teacher,
        distill_weight=0.7,
        distill_temperature=2.0,
    )
    assert main(argv) == 0
    # 12 training images in batches of 4, 2 epochs; the 6 validation images are evaluated twice, never taught
    assert batches == [4] * 6
    recipe = read_json(run_dir / "training_config.json")["recipe"]
    assert (recipe["distill_weight"], recipe["distill_temperature"]) == (0.7, 2.0)
    assert recipe["teacher"] == rerunnable_path(str(trained_teacher)), "as a re-runnable command names it"
    assert "| distill_weight | 0.7 |" in (run_dir / "README.md").read_text()


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"mode": "feature-extraction"}, "--mode full or two-stage"),
        ({"distill_weight": 1.5}, "--distill-weight"),
        ({"distill_temperature": 0}, "--distill-temperature"),
    ],
)
def test_a_run_the_teacher_cannot_teach_is_refused_before_training(
    tiny_checkpoints,
    classes_dir,
    trained_teacher,
    tmp_path,
    capsys,
    options,
    said,  # noqa: F811
):
    argv = train_argv(
        model=tiny_checkpoints[("timm", "classification")],
        dataset=classes_dir,
        output_dir=tmp_path / "run",
        teacher=trained_teacher,
        **options,
    )
    assert main(argv) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_a_teacher_of_other_classes_is_refused_with_both_lists(tiny_checkpoints, classes_dir, tmp_path, capsys):  # noqa: F811
    model = tiny_checkpoints[("timm", "classification")]
    argv = train_argv(model=model, dataset=classes_dir, output_dir=tmp_path / "run", mode="full", teacher=model)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "the same classes" in err and "['blue', 'red']" in err
