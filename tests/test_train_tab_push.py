"""The Train tab's "Push to hub" and "Publish as a Space" (issue 28) against the local hub stand-in: a tiny run through
the tab's endpoints, its model pushed with its card, a Space serving it; bad ids refused before any request; offline a
refusal that says how to publish later; whose token each push uses (a Space visitor's OAuth token, the operator's
login from this machine only, a pasted one), and none of them ever shown."""

from __future__ import annotations

import time
from types import SimpleNamespace

import gradio as gr
import gradio.routes
import pytest
import yaml
from gradio_client import Client
from gradio_client.exceptions import AppError

from demos.models import DemoModels
from demos.tabs import train, train_publish
from demos.training import publish
from demos.training.settings import TrainingSettings
from tests.hub_server import HubStandIn
from tests.serving import free_port
from tests.test_hub_push import FAKE_TOKEN, downloads_in_this_process, online_in_this_process, stand_in  # noqa: F401
from tests.test_train_tab import HEAD_ONLY, OUTPUTS, photos, served, train_inputs  # noqa: F401
from tests.test_train_tab_jobs import tiny_base, wait_for  # noqa: F401

VISITOR_TOKEN = "hf_VisitorOAuthTokenFromTheSignIn0123"
PASTED_TOKEN = "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01"


@pytest.fixture(scope="module")
def trained(served, photos):  # noqa: F811
    """A finished head-only run of this module's client session: (client, its job)."""
    demo, settings = served
    client = Client(demo.local_url, verbose=False)
    running = client.submit(*train_inputs(photos[0], settings.base_models[0], HEAD_ONLY), api_name="/train")
    wait_for(lambda: settings.runner.running is not None, what="the run to start")
    job = settings.runner.running
    result = dict(zip(OUTPUTS, running.result(timeout=300), strict=True))
    assert result["status"].startswith("**Done**"), result
    return client, job


@pytest.fixture
def hub(stand_in):
    """The hub stand-in, reached by this process (the served app runs in it) with the operator's login FAKE_TOKEN;
    downloads too: the Space checks the model's card by a file download."""
    with downloads_in_this_process(stand_in):
        yield stand_in


def authorizations(stand_in: HubStandIn) -> list[str]:
    """From now on, the Authorization header of every request the stand-in gets (the list fills as they come)."""
    seen = []

    class Recording(stand_in._server.RequestHandlerClass):
        def _route(self, method: str) -> None:
            seen.append(self.headers.get("Authorization", ""))
            super()._route(method)

    stand_in._server.RequestHandlerClass = Recording
    return seen


def header(readme: str) -> dict:
    return yaml.safe_load(readme.split("---")[1])


def test_the_run_is_pushed_with_its_card_and_published_as_a_space_that_serves_it(trained, hub):
    client, job = trained
    where = client.predict("alice/colours", False, "", api_name="/push_to_hub")
    files = set(hub.repos["alice/colours"].commit("main").files)
    assert {"config.json", "model.safetensors", "README.md", "eval_results.json", "confusion_matrix.png"} <= files
    assert not any(name.startswith(("checkpoint-", "runs/")) for name in files)
    card = hub.file("alice/colours", "README.md").decode()
    assert 'model="alice/colours"' in card and "## Evaluation" in card  # the card names the repo it loads from
    assert f"[alice/colours]({hub.url}/alice/colours)" in where and "(public)" in where

    where = client.predict("alice/colours-demo", True, "", api_name="/publish_space")
    space = hub.spaces["alice/colours-demo"]
    assert space.sdk == "gradio" and space.private
    app = hub.file("alice/colours-demo", "app.py", kind="spaces").decode()
    assert "food_model='alice/colours'" in app and "boneage_model='alice/colours'" in app  # a classifier: Food
    meta = header(hub.file("alice/colours-demo", "README.md", kind="spaces").decode())
    assert meta["models"] == ["alice/colours"] and meta["hf_oauth"] is True
    assert f"[alice/colours-demo]({hub.url}/spaces/alice/colours-demo)" in where and "Food tab" in where
    assert f"[alice/colours]({hub.url}/alice/colours)" in where  # both links, together
    assert FAKE_TOKEN not in where


def test_a_bad_repo_id_is_refused_before_any_request(trained, hub):
    client, _ = trained
    before = len(hub.requests)
    for bad in ("colours", "alice/two words", "alice/../colours", ""):
        with pytest.raises(AppError, match="your-name/model-name"):
            client.predict(bad, False, "", api_name="/push_to_hub")
    with pytest.raises(AppError, match="your-name/space-name"):
        client.predict("no-owner", False, "", api_name="/publish_space")
    assert len(hub.requests) == before and not hub.repos and not hub.spaces


def test_offline_or_unreachable_the_buttons_say_how_to_publish_the_zip_later(trained, monkeypatch, tmp_path):
    client, job = trained
    zipped = publish.zip_name(job.id).removesuffix(".zip")
    with pytest.raises(AppError) as offline:  # tests run with HF_HUB_OFFLINE=1
        client.predict("alice/colours", True, "", api_name="/push_to_hub")
    assert "offline (HF_HUB_OFFLINE=1)" in str(offline.value)
    assert f"python -m hub push {zipped} alice/colours --private" in str(offline.value) and "zip" in str(offline.value)
    with pytest.raises(publish.PublishRefused, match="python -m hub.space alice/demo --food-model alice/colours"):
        publish.publish_run_space(
            "alice/demo", "alice/colours", regression=False, private=False, credentials=lambda: None, folder=tmp_path
        )

    nobody_there = SimpleNamespace(url=f"http://127.0.0.1:{free_port()}")
    with online_in_this_process(nobody_there), pytest.raises(AppError) as unreachable:
        client.predict("alice/colours", False, "", api_name="/push_to_hub")
    assert "cannot be reached" in str(unreachable.value) and f"python -m hub push {zipped} alice/colours`" in str(
        unreachable.value
    )
    assert FAKE_TOKEN not in str(unreachable.value)


def test_each_push_uses_the_right_token_and_shows_none(trained, served, hub, monkeypatch):  # noqa: F811
    """A Space's visitor pushes with their sign-in; a visitor through a public link with a pasted token, never the
    operator's login, which serves requests from this machine only."""
    demo, _ = served
    client, job = trained
    push = next(fn.fn for fn in demo.fns.values() if fn.api_name == "push_to_hub")
    visitor = SimpleNamespace(session_hash=client.session_hash, client=SimpleNamespace(host="203.0.113.7"))
    signed_in = gr.OAuthToken(token=VISITOR_TOKEN, scope="openid profile write-repos", expires_at=int(time.time()) + 60)
    seen = authorizations(hub)

    monkeypatch.setenv("SPACE_ID", "alice/transferlab")
    where, pushed = push(job.id, "carol/colours", True, "", signed_in, visitor)
    assert set(seen) == {f"Bearer {VISITOR_TOKEN}"} and hub.repos["carol/colours"].private
    assert pushed["repo_id"] == "carol/colours" and VISITOR_TOKEN not in where
    asked = len(hub.requests)
    with pytest.raises(gr.Error, match="Sign in with Hugging Face"):  # the Space's own HF_TOKEN is its operator's
        push(job.id, "carol/colours", False, PASTED_TOKEN, None, visitor)

    monkeypatch.delenv("SPACE_ID")
    with pytest.raises(gr.Error, match="Paste a Hugging Face token") as refused:
        push(job.id, "dave/colours", False, "", None, visitor)
    with pytest.raises(gr.Error, match="not a Hugging Face token") as malformed:
        push(job.id, "dave/colours", False, f"{PASTED_TOKEN} oops", None, visitor)
    assert len(hub.requests) == asked and FAKE_TOKEN not in str(refused.value) + str(malformed.value)
    assert PASTED_TOKEN not in str(malformed.value)
    seen.clear()
    push(job.id, "dave/colours", False, PASTED_TOKEN, None, visitor)
    assert set(seen) == {f"Bearer {PASTED_TOKEN}"}


def rendered_tab() -> list:
    """The blocks of a Train tab built in a Blocks of its own."""
    with gr.Blocks() as demo:
        train.render(DemoModels(checkpoints={}, training=TrainingSettings()))
    return list(demo.blocks.values())


def test_the_sign_in_button_is_there_in_a_space_only(monkeypatch):
    """Elsewhere Gradio's sign-in is a stand-in that must reach the hub as the app starts; in a Space without Gradio's
    OAuth packages the app could not start with it, so the tab says what to install instead."""
    monkeypatch.delenv("SPACE_ID", raising=False)
    blocks = rendered_tab()
    assert not any(isinstance(block, gr.LoginButton) for block in blocks)
    assert [block.visible for block in blocks if isinstance(block, gr.Textbox) and block.type == "password"] == [True]

    monkeypatch.setenv("SPACE_ID", "alice/transferlab")
    real = train_publish.importlib.util.find_spec
    monkeypatch.setattr(
        train_publish.importlib.util, "find_spec", lambda name: None if name == "authlib" else real(name)
    )
    blocks = rendered_tab()
    assert not any(isinstance(block, gr.LoginButton) for block in blocks)
    assert any(
        isinstance(b, gr.Markdown) and "gradio[oauth]" in (b.value or "") and "authlib" in b.value for b in blocks
    )

    monkeypatch.setattr(train_publish.importlib.util, "find_spec", lambda name: object())  # as with gradio[oauth]
    attached = []
    monkeypatch.setattr(gradio.routes, "attach_oauth", attached.append)  # its routes need those packages
    blocks = rendered_tab()
    assert any(isinstance(block, gr.LoginButton) for block in blocks) and attached
    assert [block.visible for block in blocks if isinstance(block, gr.Textbox) and block.type == "password"] == [False]
