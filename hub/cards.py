"""Model cards for training runs, built from typed card data (`ModelCardData`) and the template hub/model_card.md.

    python -c "from pathlib import Path; from hub.cards import write_model_card; write_model_card(Path('runs/food10'))"

A run folder holds the checkpoint (config.json, model.safetensors, processor) plus what training measured:
eval_results.json, training_config.json and confusion_matrix.png (classification) or predicted_vs_true.png
(regression). `write_model_card(run_dir)` turns those into run_dir/README.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hub.checkpoint import is_timm, local_folder
from hub.contract import TRAINING_CONFIG, Augmentation, Recipe, Task, TaskKind, TrainingRecord
from hub.repo_ids import is_repo_id

TEMPLATE = Path(__file__).with_name("model_card.md")
# Hub tokens start with "hf_"; a command line recorded in a card must never carry one.
TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{8,}")

CLASSIFICATION_METRICS = {  # key in eval_results.json -> (model-index metric type, pretty name)
    "accuracy": ("accuracy", "Accuracy"),
    "macro_f1": ("f1", "Macro F1"),
    "top5_accuracy": ("top5_accuracy", "Top-5 accuracy"),
}
REGRESSION_METRICS = {"mae": ("mae", "MAE"), "rmse": ("rmse", "RMSE"), "r2": ("r2", "R²")}
UNRECORDED_DATA_TERMS = "The training data's terms were not recorded: check them before reusing this model."
# The training record's fields the card's hyper-parameter table shows, in its order; a regression run's own
# (loss, target_column, condition_column) go before image_size.
HYPER_PARAMETERS = (
    "epochs",
    "learning_rate",
    "backbone_learning_rate",
    "freeze_batchnorm",
    "head_epochs",
    "head_learning_rate",
    "batch_size",
    "train_image_size",
    "image_size",
    "augment",
    "weights",
    "seed",
)
REGRESSION_HYPER_PARAMETERS = ("loss", "target_column", "condition_column")
MEDICAL_NOTE = (
    "**Research demo, not a medical device.** It must not be used to diagnose, treat or make any clinical decision "
    "about a patient; its estimates have not been validated clinically."
)


class CardError(ValueError):
    """The run folder lacks what a model card is built from; the message names the missing file."""


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CardError(f"{path} is missing: a model card is built from the files a training run writes.")
    return json.loads(path.read_text())


def _read_record(run_dir: Path) -> TrainingRecord:
    """The run's training_config.json as its typed record; CardError when it is missing or not a record."""
    path = run_dir / TRAINING_CONFIG
    try:
        record = TrainingRecord.read(run_dir)
    except (TypeError, ValueError) as err:  # a required field missing, an unknown key, a value outside a vocabulary
        raise CardError(f"{path} is not a training record this version reads: {err}") from err
    if record is None:
        raise CardError(f"{path} is missing: a model card is built from the files a training run writes.")
    return record


def hub_base_model(base: str | None) -> str | None:
    """A hub-valid `base_model` for what training started from, or None when it has no hub id."""
    from hub.default_backbone import BACKBONES

    if not base:
        return None
    if base in BACKBONES:
        return f"timm/tf_efficientnet_lite{BACKBONES[base]}.in1k"
    folder = local_folder(base)
    if folder:  # a local checkpoint: it derives from whatever its own card says
        card = folder / "README.md"
        return ModelCard.load(card).data.base_model if card.is_file() else None
    return base if is_repo_id(base) else None


def base_record(base: str | None) -> TrainingRecord | None:
    """The training record of a local base checkpoint, so that a run continuing it can be redone (its commands) and
    keeps what it recorded of the data. None for a hub id, a backbone alias, or a folder no TransferLab run wrote."""
    folder = local_folder(base) if base else None
    return TrainingRecord.read(folder) if folder else None


def earlier_commands(base: str | None) -> list[str]:
    """The commands that trained a local base checkpoint, oldest first (empty when `base_record` has none)."""
    record = base_record(base)
    return record.all_commands if record else []


def hub_dataset(dataset: str | None) -> str | None:
    """The dataset as a hub id, or None for a local folder (which is described in the text instead)."""
    return dataset if is_repo_id(dataset) and not Path(dataset).expanduser().exists() else None


def _dataset_names(dataset: str | None) -> tuple[str | None, str, str]:
    """The dataset's hub id (None for a local folder), its short label, and how the card's text names it."""
    dataset_id = hub_dataset(dataset)
    label = dataset_id or Path(str(dataset)).name
    return dataset_id, label, f"the hub dataset `{dataset_id}`" if dataset_id else f"the local image folder `{label}`"


def rerunnable_path(value: str) -> str:
    """An argument as a recorded command or a card states it: a path of this machine relative to the working
    directory (`runs/food10`, or `../data` outside it), so that the command re-runs from there on any machine and no
    absolute path of this one is published. Anything else (a relative path, a number, a text with spaces) is
    returned as it is."""
    if not Path(value).is_absolute() or any(character.isspace() for character in value):
        return value
    return os.path.relpath(value)


def shown_folder(folder: Path) -> str:
    """A local checkpoint folder as a card's usage snippet loads it: relative to the working directory when under
    it, else by its own name (the snippet is run beside it); never an absolute path of this machine."""
    folder = folder.resolve()
    return str(folder.relative_to(Path.cwd())) if folder.is_relative_to(Path.cwd()) else folder.name


def rerunnable_command(program: str, argv: list[str]) -> str:
    """`program` and its arguments as one shell line, paths as `rerunnable_path` writes them (also in `--opt=PATH`)."""
    return f"{program} {shlex.join(_rerunnable_argument(argument) for argument in argv)}".rstrip()


def _rerunnable_argument(argument: str) -> str:
    option, equals, value = argument.partition("=") if argument.startswith("-") else ("", "", argument)
    return option + equals + rerunnable_path(value)


def _redact(text: str) -> str:
    token = os.environ.get("HF_TOKEN")
    if token:
        text = text.replace(token, "***")
    return TOKEN_PATTERN.sub("hf_***", text)


def _fmt(value) -> str:
    """A value as the card's tables show it: floats to 4 digits, a pair like the JSON it was recorded as ([h, w])."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(list(value) if isinstance(value, tuple) else value)


def _eval_results(evaluation: dict, dataset_id: str | None, dataset_label: str, unit: str | None) -> list[EvalResult]:
    regression = evaluation["task"] == TaskKind.REGRESSION
    names = REGRESSION_METRICS if regression else CLASSIFICATION_METRICS
    results = []
    for key, (metric_type, pretty) in names.items():
        if key not in evaluation["metrics"]:
            continue
        in_unit = regression and unit and metric_type in {"mae", "rmse"}
        results.append(
            EvalResult(
                task_type="image-classification",
                task_name="Image regression" if regression else "Image classification",
                dataset_type=dataset_id or "imagefolder",
                dataset_name=dataset_label,
                dataset_split=evaluation.get("split"),
                metric_type=metric_type,
                metric_name=f"{pretty} ({unit})" if in_unit else pretty,
                metric_value=round(float(evaluation["metrics"][key]), 4),
            )
        )
    return results


def _license(training: TrainingRecord) -> dict:
    """Who may use the weights: restricted when the run recorded its data's terms (they bind the weights too)."""
    if training.data_terms:
        return {"license": "other", "license_name": "research-only", "license_link": "README.md#data-terms"}
    return {"license": "apache-2.0"}


def _usage(model_ref: str, task: Task, target: str, unit: str) -> tuple[str, str]:
    """The card's usage snippet (the pipeline, or the processor and the raw output in `unit`) and the note under it."""
    if task.is_classification:
        code = (
            "from transformers import pipeline\n\n"
            f'classifier = pipeline("image-classification", model="{model_ref}")\n'
            'print(classifier("photo.jpg"))'
        )
        note = (
            "The pipeline applies the checkpoint's own image processor (resize, crop, normalisation). The "
            "confidences are calibrated: a temperature fitted on validation is folded into the head."
        )
        return code, note
    name = unit.replace(" ", "_") if unit.replace(" ", "_").isidentifier() else "prediction"
    if task.condition_column:  # one output per value of the condition column: pick the image's own
        value = next(iter(task.condition_outputs))
        pick = f'model.config.condition_outputs["{value}"]  # the value of `{task.condition_column}` as in metadata.csv'
        processor_code = f"output = {pick}\n"
        logits = "logits[:, output]"
        pipeline_note = (
            f"the pipeline returns every output, one per label (e.g. `{task.output_names[-1]}`), with its value as "
            "the score."
        )
    else:
        processor_code, logits = "", "logits[:, 0]"
        pipeline_note = "the pipeline returns the value as the score of its single label."
    code = (
        "import torch\nfrom PIL import Image\n"
        "from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline\n\n"
        f'processor = AutoImageProcessor.from_pretrained("{model_ref}")\n'
        f'model = AutoModelForImageClassification.from_pretrained("{model_ref}").eval()\n'
        'inputs = processor(Image.open("image.png").convert("RGB"), return_tensors="pt")\n'
        + processor_code
        + "with torch.no_grad():\n"
        f"    {name} = model(**inputs).{logits}  # already in {unit}\n"
        f'print(f"{target}: {{{name}.item():.1f}} {unit}")\n\n'
        "# or, with the pipeline (problem_type is regression, so no softmax is applied):\n"
        f'estimator = pipeline("image-classification", model="{model_ref}")\n'
        'print(estimator("image.png"))'
    )
    note = (
        f"The output is the {target} in {unit}: any normalisation used in training is folded back into the head; "
        + pipeline_note
    )
    return code, note


def _intended_use(training: TrainingRecord, dataset_text: str) -> str:
    text = (
        f"A transfer-learning result on {dataset_text}, for learning, demos and as a starting point for further "
        "fine-tuning. It was evaluated only on the split named above; expect lower quality on images unlike its "
        "training data (other cameras, framing, populations)."
    )
    # The run recorded that it learnt from X-rays (their augmentation): medical images, so the card says it is no
    # medical device.
    return text + "\n\n" + MEDICAL_NOTE if training.augment is Augmentation.RADIOGRAPH else text


def _hyper_rows(training: TrainingRecord) -> list[dict]:
    """The recorded hyper-parameters and recipe options that applied to the run, as (name, value) rows."""
    keys = list(HYPER_PARAMETERS)
    if training.task is TaskKind.REGRESSION:
        at = keys.index("image_size")
        keys[at:at] = REGRESSION_HYPER_PARAMETERS
    rows = [{"name": key, "value": _fmt(getattr(training, key))} for key in keys if getattr(training, key) is not None]
    return rows + _recipe_rows(training)


def _recipe_rows(training: TrainingRecord) -> list[dict]:
    """The recipe options the run used (those left at none or zero are not shown)."""
    recipe = dataclasses.asdict(training.recipe) if training.recipe else {}
    if training.augment is not Augmentation.RANDOM_CROP:  # the photo transform's options did not apply
        for key in Recipe.PHOTO_ONLY:
            recipe.pop(key, None)
    return [{"name": key, "value": _fmt(value)} for key, value in recipe.items() if value not in (None, 0, 0.0)]


def _metric_rows(evaluation: dict, unit: str | None) -> list[dict]:
    """The headline metrics of an evaluation, as (name, value) rows; MAE and RMSE name `unit` when given."""
    names = REGRESSION_METRICS if evaluation["task"] == TaskKind.REGRESSION else CLASSIFICATION_METRICS
    return [
        {
            "name": pretty + (f" ({unit})" if unit and key in {"mae", "rmse"} else ""),
            "value": _fmt(evaluation["metrics"][key]),
        }
        for key, (_, pretty) in names.items()
        if key in evaluation["metrics"]
    ]


def _summary(task: Task, target: str, unit: str, dataset_text: str) -> str:
    """The card's first sentence: what the model predicts from what, and the data it was fine-tuned on."""
    if task.condition_column:
        outputs = ", ".join(f"`{value}` -> `logits[:, {index}]`" for value, index in task.condition_outputs.items())
        return (
            f"Predicts the {target} in {unit} from an image and its `{task.condition_column}` value, one output per "
            f"value ({outputs}; recorded in the config as `condition_outputs`), fine-tuned on {dataset_text}."
        )
    if task.is_regression:
        return (
            f"Predicts the {target} in {unit} from an image (one output, `logits[:, 0]`), fine-tuned on {dataset_text}."
        )
    labels = ", ".join(task.labels)
    return f"Classifies an image into {len(task.labels)} classes ({labels}), fine-tuned on {dataset_text}."


def _extra_rows(evaluation: dict) -> list[dict]:
    """Calibration, served size and robustness figures the run measured, as (name, value) rows."""
    rows = []
    calibration = evaluation.get("calibration")
    if calibration:
        rows += [
            {"name": "Expected calibration error, before temperature", "value": _fmt(calibration["ece_before"])},
            {
                "name": "Expected calibration error, temperature folded in (fitted on this split)",
                "value": _fmt(calibration["ece_after"]),
            },
            {"name": "Temperature", "value": _fmt(calibration["temperature"])},
            {
                "name": "Out-of-distribution threshold "
                f"(top probability; {calibration['ood_pass_rate']:.0%} of validation passes)",
                "value": _fmt(calibration["ood_threshold"]),
            },
        ]
    for size, score in (evaluation.get("eval_sizes") or {}).items():
        rows.append({"name": f"Validation score at {size} px", "value": _fmt(score)})
    robustness = evaluation.get("robustness")
    if robustness:
        rows.append(
            {
                "name": "MAE on the robustness check set (validation X-rays given other sources' look)",
                "value": _fmt(robustness["mae"]),
            }
        )
        rows.append({"name": "Robustness MAE / validation MAE", "value": _fmt(robustness["ratio_to_validation"])})
    return rows


def build_model_card(run_dir: Path, *, repo_id: str | None = None, demo_space: str | None = None) -> ModelCard:
    """The model card of the run in `run_dir`; `repo_id` (else the folder) is what the usage snippet loads.

    `demo_space`: the id of a Space that runs the model (python -m hub.space), linked under the summary.
    """
    run_dir = Path(run_dir)
    config = _read_json(run_dir / "config.json")
    task = Task.from_config(config)
    evaluation = _read_json(run_dir / "eval_results.json")
    training = _read_record(run_dir)
    target = task.target or training.target_column or "target"
    unit = task.unit or training.target_unit or "units"
    dataset_id, dataset_label, dataset_text = _dataset_names(evaluation.get("dataset") or training.dataset)
    base_id = hub_base_model(training.base_model)
    base_text = (
        f"[`{base_id}`](https://huggingface.co/{base_id})" if base_id else f"`{rerunnable_path(training.base_model)}`"
    )
    card_data = ModelCardData(
        base_model=base_id,
        datasets=[dataset_id] if dataset_id else None,
        pipeline_tag="image-classification",
        library_name="timm" if is_timm(config) else "transformers",
        tags=["image-classification", "transferlab", task.kind.value],
        model_name=repo_id.split("/")[-1] if repo_id else run_dir.resolve().name,
        eval_results=_eval_results(evaluation, dataset_id, dataset_label, unit if task.is_regression else None),
        **_license(training),
    )
    per_class = evaluation["metrics"].get("per_class_accuracy") or {}
    plot = "predicted_vs_true.png" if task.is_regression else "confusion_matrix.png"
    usage, usage_note = _usage(repo_id or shown_folder(run_dir), task, target, unit)
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        title=card_data.model_name,
        summary=_summary(task, target, unit, dataset_text),
        split=evaluation.get("split", "validation"),
        dataset_text=dataset_text,
        num_examples=evaluation.get("num_examples", "?"),
        metric_rows=_metric_rows(evaluation, unit if task.is_regression else None),
        per_class_rows=[{"name": name, "value": _fmt(float(value))} for name, value in per_class.items()],
        extra_rows=_extra_rows(evaluation),
        plot_file=plot if (run_dir / plot).is_file() else None,
        plot_caption=f"Predicted vs true {target}" if task.is_regression else "Confusion matrix",
        usage=usage,
        usage_note=usage_note,
        base_text=base_text,
        mode=training.mode.value,
        mode_text=training.mode.description,
        hyper_rows=_hyper_rows(training),
        command=_redact(training.command),
        earlier_commands=[_redact(command) for command in training.earlier_commands],
        averaged_from=list(training.averaged_from),
        intended_use=_intended_use(training, dataset_text),
        data_terms=training.data_terms or UNRECORDED_DATA_TERMS,
        demo_space=demo_space,
    )


def add_split_results(folder: Path, evaluation: dict, *, unit: str | None = None) -> Path:
    """Add one split's results (an eval_results_<split>.json payload) to the card in `folder`; returns its path.

    The split's entries in the model-index and its section in the text are replaced if present; the other
    splits' stay, so the card shows validation and test side by side.
    """
    path = Path(folder) / "README.md"
    if not path.is_file():
        raise CardError(f"{path} is missing: there is no model card to add results to (training writes one).")
    card = ModelCard.load(path)
    dataset_id, dataset_label, _ = _dataset_names(evaluation.get("dataset"))
    regression = evaluation["task"] == TaskKind.REGRESSION
    split = evaluation["split"]
    kept = [r for r in card.data.eval_results or [] if (r.dataset_split, r.dataset_name) != (split, dataset_label)]
    card.data.eval_results = kept + _eval_results(evaluation, dataset_id, dataset_label, unit if regression else None)
    card.data.model_name = card.data.model_name or Path(folder).resolve().name  # a model-index needs a name
    card.text = _with_split_section(card.text, evaluation, dataset_label, unit if regression else None)
    card.save(path)
    return path


def _with_split_section(text: str, evaluation: dict, dataset_label: str, unit: str | None) -> str:
    """The card text with a section of the split's metrics, before "How to use" (replacing an older one)."""
    heading = f"## Evaluation on the `{evaluation['split']}` split of `{dataset_label}`"
    rows = [f"| {row['name']} | {row['value']} |" for row in _metric_rows(evaluation, unit)]
    recorded = evaluation.get("command")
    command = f"\n\n```bash\n{_redact(recorded)}\n```" if recorded else ""
    section = (
        f"{heading}\n\n{evaluation['num_examples']} images.\n\n| metric | value |\n|---|---|\n"
        + "\n".join(rows)
        + command
        + "\n\n"
    )
    old = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if old.search(text):
        return old.sub(lambda _: section, text, count=1)
    at = text.find("\n## How to use")
    return text.rstrip("\n") + "\n\n" + section if at < 0 else text[: at + 1] + section + text[at + 1 :]


def write_model_card(run_dir: Path, *, repo_id: str | None = None, demo_space: str | None = None) -> Path:
    """Write run_dir/README.md (the model card of the run) and return its path."""
    path = Path(run_dir) / "README.md"
    build_model_card(run_dir, repo_id=repo_id, demo_space=demo_space).save(path)
    return path
