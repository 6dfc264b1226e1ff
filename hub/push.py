"""Publish a checkpoint folder on the Hugging Face hub as one commit, and fetch one back.

    python -m hub push RUN_DIR REPO_ID [--private] [--revision BRANCH]
    python -m hub pull REPO_ID [--revision R] --out DIR
    python -m hub push-dataset DIR DATASET_ID [--public]     # an imagefolder, e.g. the demo's corrections/food

The token comes from where huggingface_hub looks (HF_TOKEN, then `hf auth login`); it is never printed.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx2
from huggingface_hub import DatasetCard, DatasetCardData, HfApi, set_client_factory, snapshot_download
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import _http

from hub.cards import write_model_card
from hub.checkpoint import SAFE_CHECKPOINT_FILES
from hub.constants import IMAGE_SUFFIXES
from hub.repo_ids import check_repo_id as _check_repo_id

logger = logging.getLogger(__name__)
REQUIRED_FILES = ("config.json", "model.safetensors", "README.md")
RUN_FILES = ("eval_results.json", "training_config.json")  # what write_model_card builds the card from
# Trainer leaves resumable states, logs and pickled arguments next to the weights: none belongs in the repo.
UPLOAD_IGNORE = [
    "checkpoint-*",
    "runs/*",
    "logs/*",
    "*.log",
    "optimizer.pt",
    "scheduler.pt",
    "rng_state*.pth",
    "trainer_state.json",
    "*.bin",
    ".ipynb_checkpoints/*",
]
RETRY_DELAYS_S = (2.0, 8.0, 30.0)  # waits between tries; tests set zeros
REQUEST_TIMEOUT_S = 300.0  # huggingface_hub's client waits forever by default; a hung server must fail a try
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


class PushError(RuntimeError):
    """A push or pull failed; the message says why, what is intact, and how to retry."""


def retry_command(folder: Path, repo_id: str, *, private: bool, revision: str | None) -> str:
    """The exact command that repeats a push."""
    args = ["python", "-m", "hub", "push", str(folder), repo_id]
    args += ["--private"] if private else []
    args += ["--revision", revision] if revision else []
    return shlex.join(args)


def check_repo_id(repo_id: str) -> None:
    """Refuse, before any network call, an id the hub would refuse or one without its owner (PushError)."""
    _check_repo_id(repo_id, example="your-name/model-name", error=PushError)


def check_complete(folder: Path, *, repo_id: str | None = None) -> None:
    """Fail before any network call unless `folder` is a whole checkpoint; write its card if the run files allow."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PushError(f"{folder} is not a folder: pass the run folder that training wrote.")
    if not (folder / "README.md").is_file() and all((folder / name).is_file() for name in RUN_FILES):
        write_model_card(folder, repo_id=repo_id)
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        hint = (
            "write the model card with hub.cards.write_model_card (it needs eval_results.json and training_config.json)"
            if missing == ["README.md"]
            else "save the model with save_pretrained (safetensors) and finish training before pushing"
        )
        raise PushError(f"{folder} is not a complete checkpoint: missing {', '.join(missing)}; {hint}.")


def _is_transient(err: Exception) -> bool:
    if isinstance(err, httpx2.TransportError):  # timeouts, refused or dropped connections
        return True
    return isinstance(err, HfHubHTTPError) and err.response is not None and err.response.status_code in TRANSIENT_STATUS


def _is_auth(err: Exception) -> bool:
    return isinstance(err, HfHubHTTPError) and err.response is not None and err.response.status_code in {401, 403}


def _reason(err: Exception) -> str:
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        return f"HTTP {err.response.status_code} from {err.response.request.url.host}: {str(err).splitlines()[0]}"
    return f"{type(err).__name__}: {err}"


@contextmanager
def request_timeout(seconds: float) -> Iterator[None]:
    """Inside the block, every request huggingface_hub makes fails a try after `seconds` instead of waiting forever.

    Why a client factory, and why confined: huggingface_hub's writes (create_repo, upload_folder) take no timeout and
    its shared client has none, so the only way to bound them is `set_client_factory`, its public hook, which holds
    for the whole process. When the block ends it puts back the factory that was in force before, so the rest of
    the process (a demo's model downloads) keeps huggingface_hub's own behaviour. huggingface_hub has no public getter
    of that factory: it is read from its `_http` module, and wrapped, so a proxy or certificates someone configured
    there still apply to the uploads.
    """
    previous = _http._GLOBAL_CLIENT_FACTORY

    def client_with_timeout() -> httpx2.Client:
        client = previous()
        client.timeout = httpx2.Timeout(seconds, connect=min(seconds, 30.0))
        return client

    set_client_factory(client_with_timeout)
    try:
        yield
    finally:
        set_client_factory(previous)


def _upload(
    folder: Path,
    repo_id: str,
    *,
    repo_type: str,
    private: bool,
    revision: str | None,
    token: str | None,
    commit_message: str,
):
    api = HfApi(token=token)
    # Spaces need an SDK at creation; "gradio" is the only kind this project publishes.
    space_sdk = "gradio" if repo_type == "space" else None
    api.create_repo(repo_id, repo_type=repo_type, space_sdk=space_sdk, private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        repo_type=repo_type,
        folder_path=folder,
        revision=revision,
        commit_message=commit_message,
        ignore_patterns=UPLOAD_IGNORE,
    )


def upload_with_retries(
    folder: Path,
    repo_id: str,
    *,
    retry: str,
    what: str = "checkpoint",
    repo_type: str = "model",
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str,
    retry_delays: Sequence[float] | None = None,
    request_timeout_s: float = REQUEST_TIMEOUT_S,
):
    """create_repo(exist_ok=True) then one upload_folder commit of `folder`; returns huggingface_hub's CommitInfo.

    Transient failures (timeouts, connection errors, HTTP 408/429/5xx) are retried after each delay of
    `retry_delays` (default RETRY_DELAYS_S). Raises PushError, saying why, that the local `what` is intact and the
    command `retry` that repeats the upload, when it finally fails.
    """
    delays = RETRY_DELAYS_S if retry_delays is None else tuple(retry_delays)
    for attempt in range(len(delays) + 1):
        try:
            with request_timeout(request_timeout_s):
                return _upload(
                    folder,
                    repo_id,
                    repo_type=repo_type,
                    private=private,
                    revision=revision,
                    token=token,
                    commit_message=commit_message,
                )
        except (HfHubHTTPError, httpx2.HTTPError, ValueError, OSError) as err:  # ValueError: the hub rejected the card
            intact = f"The local {what} {folder} is intact (nothing was changed on disk)."
            if _is_auth(err):
                raise PushError(
                    f"The hub refused the credentials ({_reason(err)}). Log in with `hf auth login` or set HF_TOKEN "
                    f"to a token with write access to '{repo_id}'. {intact} Retry with:\n  {retry}"
                ) from err
            if not _is_transient(err) or attempt == len(delays):
                tries = f" after {attempt + 1} tries" if _is_transient(err) else ""
                raise PushError(
                    f"Pushing {folder} to '{repo_id}' failed{tries}: {_reason(err)}. {intact} Retry with:\n  {retry}"
                ) from err
            logger.warning("Push try %d failed (%s); retrying in %.0f s.", attempt + 1, _reason(err), delays[attempt])
            time.sleep(delays[attempt])


def push_checkpoint(
    folder: Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    retry_delays: Sequence[float] | None = None,
    request_timeout_s: float = REQUEST_TIMEOUT_S,
):
    """Upload the complete checkpoint in `folder` to `repo_id` as one commit; returns huggingface_hub's CommitInfo.

    Fails before any network call unless the folder is a whole checkpoint; retries as `upload_with_retries` does.
    """
    folder = Path(folder)
    check_repo_id(repo_id)
    check_complete(folder, repo_id=repo_id)
    return upload_with_retries(
        folder,
        repo_id,
        retry=retry_command(folder, repo_id, private=private, revision=revision),
        private=private,
        revision=revision,
        token=token,
        commit_message=commit_message or f"Upload {folder.resolve().name} with TransferLab",
        retry_delays=retry_delays,
        request_timeout_s=request_timeout_s,
    )


def pull_checkpoint(repo_id: str, *, revision: str | None = None, out: Path, token: str | None = None) -> Path:
    """Download the checkpoint files (safetensors weights only) of `repo_id` into the folder `out`."""
    out = Path(out)
    try:
        snapshot_download(repo_id, revision=revision, local_dir=out, allow_patterns=SAFE_CHECKPOINT_FILES, token=token)
    except (HfHubHTTPError, httpx2.HTTPError, OSError) as err:  # OSError: the hub unreachable (LocalEntryNotFound)
        raise PushError(f"Could not pull '{repo_id}'{f' at {revision}' if revision else ''}: {_reason(err)}") from err
    if not (out / "model.safetensors").is_file():
        raise PushError(f"'{repo_id}' has no model.safetensors: only safetensors checkpoints are pulled.")
    return out


DATASET_CARD_TEMPLATE = Path(__file__).with_name("dataset_card.md")


def push_dataset(
    folder: Path,
    repo_id: str,
    *,
    private: bool = True,
    token: str | None = None,
    retry_delays: Sequence[float] | None = None,
    request_timeout_s: float = REQUEST_TIMEOUT_S,
):
    """Upload an imagefolder (class folders, or images with metadata.csv) as the hub dataset `repo_id`, in one commit.

    Private unless `private=False`: the demo's corrections are strangers' uploads. A dataset card (README.md) is
    written into the folder first if it has none. Retries as `upload_with_retries` does; returns its CommitInfo.
    """
    folder = Path(folder)
    check_repo_id(repo_id)
    images = [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES] if folder.is_dir() else []
    if not images:
        raise PushError(f"{folder} holds no images: pass an imagefolder, e.g. the demo's corrections/food.")
    if not (folder / "README.md").is_file():
        dataset_card(folder, repo_id, len(images)).save(folder / "README.md")
    retry = ["python", "-m", "hub", "push-dataset", str(folder), repo_id] + ([] if private else ["--public"])
    return upload_with_retries(
        folder,
        repo_id,
        retry=shlex.join(retry),
        what="dataset folder",
        repo_type="dataset",
        private=private,
        token=token,
        commit_message=f"Upload {folder.resolve().name} ({len(images)} images) with TransferLab",
        retry_delays=retry_delays,
        request_timeout_s=request_timeout_s,
    )


def dataset_card(folder: Path, repo_id: str, count: int) -> DatasetCard:
    """The card of an imagefolder: its layout, how to load it, where the images come from and what to check."""
    has_metadata = (folder / "metadata.csv").is_file()
    if has_metadata:
        columns = (folder / "metadata.csv").read_text().splitlines()[0].split(",")[1:]
        layout = f"The images with `metadata.csv`: one row per image, columns {', '.join(f'`{c}`' for c in columns)}."
    else:
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        layout = f"One folder per class ({', '.join(f'`{c}`' for c in classes)}): the folder name is the label."
    card_data = DatasetCardData(
        pretty_name=repo_id.split("/")[-1],
        task_categories=["image-classification"],
        tags=["transferlab", "corrections", "regression" if has_metadata else "classification"],
        size_categories=["n<1K" if count < 1_000 else "1K<n<10K" if count < 10_000 else "10K<n<100K"],
    )
    return DatasetCard.from_template(
        card_data,
        template_path=str(DATASET_CARD_TEMPLATE),
        pretty_name=card_data.pretty_name,
        repo_id=repo_id,
        summary=f"{count} images in the imagefolder layout, which `datasets` and TransferLab's `train` read as is.",
        layout=layout,
    )
