"""The Train tab's "Push to hub" and "Publish as a Space": a finished run's model on the hub, and a Space serving it.

/push_to_hub takes the repo id (owner/name), the private option and a token, and pushes the session's newest
finished run; /publish_space takes the Space id and publishes a Space of the model pushed last (a classifier in its
Food tab, a regressor in its Bone age tab). The page then links the repo and the Space. Whose account it goes to,
and the refusals offline, are demos/training/publish.py's. In a Space the visitor signs in with `gr.LoginButton`,
and Gradio hands each event their `gr.OAuthToken`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import gradio as gr

from demos.guards.queue_limits import client_ip
from demos.tabs.common import user_errors
from demos.training import publish
from demos.training.jobs import JobState
from demos.training.results import RunResult
from demos.training.settings import TrainingSettings
from hub.contract import TaskKind

MODEL_ID_EXAMPLE, SPACE_ID_EXAMPLE = "your-name/model-name", "your-name/space-name"
OAUTH_PACKAGES = ("authlib", "itsdangerous")  # gradio[oauth]: without them an app with gr.LoginButton cannot start


@dataclass
class PublishPage:
    """The publishing components, and what the session pushed last (for its Space)."""

    repo_id: gr.Textbox
    private: gr.Checkbox
    token: gr.Textbox
    push: gr.Button
    space_id: gr.Textbox
    publish: gr.Button
    where: gr.Markdown
    pushed: gr.State  # {"repo_id", "regression", "private"} of the model the session pushed last, or None


def render_publish() -> PublishPage:
    """The "Publish" section: sign-in (in a Space) or token, repo id, private, the two buttons and where it went."""
    space = publish.in_space()
    missing = [name for name in OAUTH_PACKAGES if importlib.util.find_spec(name) is None] if space else []
    gr.Markdown(
        "### Publish\nOnce a run is done, push its model to the Hugging Face hub, then publish a Space that serves "
        f"it. {_whose_account(space, missing)}"
    )
    if space and not missing:
        gr.LoginButton()  # in a Space only: elsewhere Gradio's stand-in sign-in must reach the hub as the app starts
    with gr.Row():
        repo_id = gr.Textbox(label="Model repo id", placeholder=MODEL_ID_EXAMPLE, elem_id="train-repo-id")
        private = gr.Checkbox(False, label="Private (the model and the Space)")
        token = gr.Textbox(
            label="Hugging Face token with write access (used only where no login is available)", type="password",
            visible=not space,
        )  # fmt: skip
        push = gr.Button("Push to hub", elem_id="train-push")
    with gr.Row():
        space_id = gr.Textbox(label="Space id", placeholder=SPACE_ID_EXAMPLE, elem_id="train-space-id")
        publish_button = gr.Button("Publish as a Space", elem_id="train-publish")
    where = gr.Markdown(elem_id="train-published")
    return PublishPage(repo_id, private, token, push, space_id, publish_button, where, gr.State(None))


def _whose_account(space: bool, missing_packages: list[str]) -> str:
    """What the section says of the account its pushes go to."""
    if not space:
        return "From this machine they use its Hugging Face login; through a public link, a token you paste."
    if missing_packages:
        return (
            f"Signing in needs packages this server lacks ({', '.join(missing_packages)}): whoever runs it can add "
            "`gradio[oauth]` to its requirements."
        )
    return "Sign in first (the button below): both go to your account."


def wire_publish(settings: TrainingSettings, page: PublishPage, job_state: gr.State) -> None:
    """/push_to_hub and /publish_space (their credentials: `credentials`)."""

    @user_errors
    def push_to_hub(job_id, repo_id, private, token, oauth_token: gr.OAuthToken | None, request: gr.Request):
        """Push the session's newest finished run to `repo_id`: (where it went, what was pushed)."""
        repo_id = publish.checked_id(repo_id, example=MODEL_ID_EXAMPLE)
        job = settings.runner.get(_session(request), job_id)
        if job is None or job.state is not JobState.DONE:
            raise publish.PublishRefused("Train a model first: a run's model can be pushed once the run is done.")
        private = bool(private)
        url = publish.push_run(
            job.run_dir, repo_id, private=private, credentials=lambda: credentials(token, oauth_token, request),
            zip_name=publish.zip_name(job.id),
        )  # fmt: skip
        pushed = {
            "repo_id": repo_id, "url": url, "private": private,
            "regression": RunResult.read(job.run_dir).task is TaskKind.REGRESSION,
        }  # fmt: skip
        return where_it_went(pushed), pushed

    @user_errors
    def publish_space(pushed, space_id, private, token, oauth_token: gr.OAuthToken | None, request: gr.Request):
        """Publish the Space `space_id` serving the model the session pushed last: where both went."""
        space_id = publish.checked_id(space_id, example=SPACE_ID_EXAMPLE)
        if not pushed:
            raise publish.PublishRefused("Push the model to the hub first: the Space loads it from there.")
        folder = settings.runner.new_folder(_session(request)) / "space"  # the Space's files, in the session's folder
        url = publish.publish_run_space(
            space_id, pushed["repo_id"], regression=pushed["regression"], private=bool(private),
            credentials=lambda: credentials(token, oauth_token, request), folder=folder,
        )  # fmt: skip
        return where_it_went(pushed, space=(space_id, url, bool(private)))

    page.push.click(
        push_to_hub, [job_state, page.repo_id, page.private, page.token], [page.where, page.pushed],
        api_name="push_to_hub",
    )  # fmt: skip
    page.publish.click(
        publish_space, [page.pushed, page.space_id, page.private, page.token], page.where, api_name="publish_space"
    )


def credentials(token, oauth_token: gr.OAuthToken | None, request: gr.Request) -> str | None:
    """The token of this request's push (demos/training/publish.py `hub_token`)."""
    return publish.hub_token(
        signed_in=oauth_token.token if oauth_token else None,
        pasted=token if isinstance(token, str) else None,
        from_this_machine=publish.is_this_machine(client_ip(request)),
    )


def where_it_went(pushed: dict, *, space: tuple[str, str, bool] | None = None) -> str:
    """Links to the pushed model and, once published, its Space (`space`: its id, address and whether private)."""
    repo_id = pushed["repo_id"]
    lines = [
        f"**Your model is on the hub** ({_visibility(pushed['private'])}): [{repo_id}]({pushed['url']}). It loads "
        f'with `AutoModelForImageClassification.from_pretrained("{repo_id}")`.'
    ]
    if space:
        space_id, url, private = space
        tab = "Bone age" if pushed["regression"] else "Food"
        lines.append(
            f"**Its Space** ({_visibility(private)}): [{space_id}]({url}), serving it in its {tab} tab once the Space "
            "has built (a few minutes)."
        )
    return "\n\n".join(lines)


def _visibility(private: bool) -> str:
    return "private" if private else "public"


def _session(request: gr.Request) -> str:
    """The visitor's Gradio session, which owns their jobs (as demos/tabs/train.py `session_name` reads it)."""
    return getattr(request, "session_hash", None) or "local"
