"""Publishing a finished Train-tab run: its checkpoint pushed to a hub model repo, and a Space that serves it.

Both go through hub/ as `python -m train --push-to-hub --demo-space` does: the card rewritten for the repo id
(hub.cards), one upload commit (hub.push.push_checkpoint), and the Space (hub.space.publish_space; a classifier
in its Food tab, a regressor in its Bone age tab).

Whose account: in a Hugging Face Space (SPACE_ID set) the visitor's own, through their "Sign in with Hugging Face"
(their OAuth token); never the Space's HF_TOKEN secret, which is its operator's. Run elsewhere, a request from this
machine uses the operator's saved login (huggingface_hub's own lookup: HF_TOKEN, else `hf auth login`), and a
pasted token only where no login is saved; a visitor through a public link must paste their own, or they could
write to the operator's repos. No message, log line or error here names a token.

Offline (HF_HUB_OFFLINE=1, or the hub unreachable) both refuse, saying how to publish the downloaded zip later.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import httpx2
from huggingface_hub import constants, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from hub.cards import write_model_card
from hub.push import PushError, push_checkpoint, retry_command
from hub.repo_ids import check_repo_id
from hub.space import SpaceError, publish_space, space_url

# What a hub token is made of: printable ASCII without spaces. Anything else is refused before it reaches an HTTP
# header, where httpx's error would quote the header, token included.
TOKEN_SHAPE = re.compile(r"[!-~]{8,256}")
ROLE_OF_REGRESSOR, ROLE_OF_CLASSIFIER = "boneage_model", "food_model"  # hub.space.publish_space's arguments


# The token of a push (`hub_token`), asked for once the server is known to be online: offline, no login would help.
Credentials = Callable[[], str | None]


class PublishRefused(ValueError):
    """A push or publish that cannot be done; the message says why and what to do (no token, no server path)."""


def in_space() -> bool:
    """Whether this app runs in a Hugging Face Space, where visitors sign in with their own account."""
    return bool(os.environ.get("SPACE_ID"))


def is_this_machine(address: str) -> bool:
    """Whether a request's client address (as uvicorn resolved it) is this machine's loopback."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # "unknown", or a name: not provably this machine


def checked_id(value, *, example: str) -> str:
    """`value` as a hub repo id (owner/name), checked before any request (any API caller may send anything)."""
    if not isinstance(value, str) or not value.strip():
        raise PublishRefused(f"Give a repo id: {example}.")
    check_repo_id(value.strip(), example=example, error=PublishRefused)
    return value.strip()


def hub_token(*, signed_in: str | None, pasted: str | None, from_this_machine: bool) -> str | None:
    """The token a push runs with; None means huggingface_hub's own lookup (the operator's saved login).

    `signed_in`: the visitor's OAuth token (a Space's sign-in); `pasted`: the token field's text.
    """
    if signed_in:
        return signed_in
    if in_space():
        raise PublishRefused(
            "Sign in with Hugging Face first: in a Space the model goes to your account, with your sign-in."
        )
    if from_this_machine and get_token() is not None:
        return None
    pasted = (pasted or "").strip()
    if pasted:
        if not TOKEN_SHAPE.fullmatch(pasted):
            raise PublishRefused("That is not a Hugging Face token: paste one from huggingface.co/settings/tokens.")
        return pasted
    if from_this_machine:
        raise PublishRefused(
            "This server has no Hugging Face login: run `hf auth login` on it, or paste a token with write access "
            "(huggingface.co/settings/tokens)."
        )
    raise PublishRefused(
        "Paste a Hugging Face token with write access (huggingface.co/settings/tokens): this server's own login is "
        "only for whoever runs it."
    )


def zip_name(job_id: str) -> str:
    """The name of a run's checkpoint zip, which the tab offers to download (and the folder it unzips into)."""
    return f"model-{job_id[:6]}.zip"


def later_push(zip_name: str, repo_id: str, *, private: bool) -> str:
    """How to publish the downloaded checkpoint zip from a machine that reaches the hub."""
    folder = Path(zip_name).stem  # the zip unpacks into one folder of this name (demos.training.results)
    command = retry_command(Path(folder), repo_id, private=private, revision=None)
    return f"Download the checkpoint zip above, unzip it, and push it from a machine online: `{command}`."


def later_space(space_id: str, model_arguments: dict[str, str], *, private: bool) -> str:
    """How to publish the Space from a machine that reaches the hub, once the model is there."""
    args = ["python", "-m", "hub.space", space_id]
    for role, repo_id in model_arguments.items():
        args += [f"--{role.replace('_', '-')}", repo_id]
    args += ["--private"] if private else []
    return f"Publish it from a machine online, once the model is pushed: `{shlex.join(args)}`."


def check_online(later: str) -> None:
    """Refuse at once where huggingface_hub is set to work offline: every request would fail."""
    if constants.HF_HUB_OFFLINE:
        raise PublishRefused(f"This server works offline (HF_HUB_OFFLINE=1): it does not reach the hub. {later}")


def failure(err: Exception, repo_id: str, later: str) -> PublishRefused:
    """The refusal for a push or publish that hub/ gave up on, by its cause (whose message may name server paths)."""
    cause = err.__cause__
    if isinstance(cause, (httpx2.TransportError, OfflineModeIsEnabled)):
        return PublishRefused(f"The hub cannot be reached from this server. {later}")
    if isinstance(cause, HfHubHTTPError) and cause.response is not None:
        status = cause.response.status_code
        if status in (401, 403):
            return PublishRefused(
                f"The hub refused the credentials (HTTP {status}): they need write access to '{repo_id}'. "
                "Sign in or paste a token of the account (or organisation) that owns it."
            )
        return PublishRefused(f"Publishing to '{repo_id}' failed: the hub answered HTTP {status}. {later}")
    return PublishRefused(str(err))  # hub/'s own refusals (an incomplete folder, a missing model) say what to do


def push_run(run_dir: Path, repo_id: str, *, private: bool, credentials: Credentials, zip_name: str) -> str:
    """Push the run's checkpoint to `repo_id` (a `checked_id`) as one commit, its card naming that id; returns the
    repo's address."""
    later = later_push(zip_name, repo_id, private=private)
    check_online(later)
    token = credentials()
    write_model_card(run_dir, repo_id=repo_id)  # as train does before a push: the card's snippet loads the repo id
    try:
        push_checkpoint(run_dir, repo_id, private=private, token=token)
    except PushError as err:
        raise failure(err, repo_id, later) from err
    return f"{constants.ENDPOINT}/{repo_id}"


def publish_run_space(
    space_id: str, model_id: str, *, regression: bool, private: bool, credentials: Credentials, folder: Path
) -> str:
    """Publish the Space `space_id` (a `checked_id`) serving the pushed `model_id`, built in `folder`; returns the
    Space's address."""
    served = {ROLE_OF_REGRESSOR if regression else ROLE_OF_CLASSIFIER: model_id}
    later = later_space(space_id, served, private=private)
    check_online(later)
    token = credentials()
    try:
        publish_space(space_id, **served, private=private, out=folder, token=token)
    except (SpaceError, PushError) as err:
        raise failure(err, space_id, later) from err
    return space_url(space_id)
