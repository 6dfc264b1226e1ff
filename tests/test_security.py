"""Security: no remote code, the hub token never leaks, the app serves no file outside its own folders.
(What a web visitor may load, and the limits on it, are tested in tests/test_public_demo.py.)

    OMP_WAIT_POLICY=PASSIVE python -m pytest -q tests/test_security.py

Pickled weights are refused by hub.load_checkpoint (tests/test_hub_loading.py); here the demo's Model tab
refuses them too, whatever a web user types.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from huggingface_hub.utils import logging as hf_logging
from transformers import AutoImageProcessor, AutoModelForImageClassification

import demos.__main__ as demos_main
from demos import app as demo_app
from demos.tabs import common
from hub.__main__ import main as hub_cli
from hub.push import PushError, push_checkpoint
from tests.serving import raw_call, serving
from tests.test_cards import make_run_folder
from tests.test_demos_images import cat_photo
from tests.test_hub_push import online_in_this_process, stand_in, subprocess_env  # noqa: F401  (stand_in: fixture)

REPO = Path(__file__).resolve().parent.parent
PROJECT_CODE = ["hub", "demos", "train", "bench", "tests", "checkpoints"]
PASSWD_LINE = re.compile(r"root:.*:0:0:")


def project_files(suffixes=(".py", ".md", ".json", ".toml", ".txt", ".cfg", ".yaml", ".yml")) -> list[Path]:
    files = [REPO / name for name in ("README.md", "pyproject.toml") if (REPO / name).is_file()]
    for folder in PROJECT_CODE:
        files += [p for p in (REPO / folder).rglob("*") if p.suffix in suffixes and ".venv" not in p.parts]
    return files


def test_trust_remote_code_is_never_switched_on():
    pattern = re.compile(r"trust_remote_code\s*=\s*(?!False\b)")  # only the explicit False is allowed
    offending = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in project_files((".py",))
        if path.name != Path(__file__).name
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offending == []


# ----------------------------------------------------------------------------- the token


def test_the_token_never_reaches_output_logs_or_card_of_a_push_that_fails_or_succeeds(stand_in, tmp_path, capfd):  # noqa: F811
    token = f"hf_{uuid.uuid4().hex}"  # unique: any occurrence can only be a leak
    run = make_run_folder(tmp_path / "run", "vit", "classification")
    # The command line in a fresh process, its token from the environment, huggingface_hub at debug verbosity.
    env = dict(subprocess_env(stand_in, tmp_path), HF_TOKEN=token, HF_HUB_VERBOSITY="debug")
    command = [sys.executable, "-m", "hub", "push", str(run), "alice/published"]
    pushed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert pushed.returncode == 0, pushed.stderr
    assert stand_in.commit_messages("alice/published")[-1] == "Upload run with TransferLab"

    # The pushes that fail run the same code in this process (a second fresh process cost 10 s of imports), with
    # every logger, huggingface_hub's own included, at DEBUG into a file, and this process's output captured.
    with online_in_this_process(stand_in), pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_TOKEN", token)
        logs = tmp_path / "push.log"
        handler = logging.FileHandler(logs)
        logging.getLogger().addHandler(handler)
        previous, previous_hub = logging.getLogger().level, hf_logging.get_verbosity()
        logging.getLogger().setLevel(logging.DEBUG)
        hf_logging.set_verbosity_debug()
        try:
            stand_in.deny_writes = True  # refused credentials: an error message that talks about the token
            with pytest.raises(SystemExit) as denied:
                hub_cli(["push", str(run), "alice/denied"])
            stand_in.deny_writes = False
            stand_in.fail_writes = 100  # 5xx until the retries run out
            with pytest.raises(PushError) as failure:
                push_checkpoint(run, "alice/failing")
        finally:
            logging.getLogger().removeHandler(handler)
            logging.getLogger().setLevel(previous)
            hf_logging.set_verbosity(previous_hub)
            handler.close()
    assert "hf auth login" in str(denied.value.code)
    assert "Retry with" in str(failure.value) and "retrying in" in logs.read_text()
    assert "(authenticated: True)" in logs.read_text()  # huggingface_hub's debug line of each request is searched

    texts = {
        "denied push": str(denied.value.code),
        "push": pushed.stdout + pushed.stderr,
        "failed push": str(failure.value) + repr(failure.value.__cause__),
        "debug log": logs.read_text(),
        "this process's output": "".join(capfd.readouterr()),
    }
    texts |= {str(p.relative_to(tmp_path)): p.read_text(errors="replace") for p in run.rglob("*") if p.is_file()}
    texts["card on the hub"] = stand_in.file("alice/published", "README.md").decode()
    assert "run/README.md" in texts and "debug log" in texts  # the card push wrote, and the DEBUG log, are searched
    leaks = [where for where, text in texts.items() if token in text or token[3:] in text]
    assert leaks == []


# ----------------------------------------------------------------------------- files the app serves


@pytest.fixture(scope="module")
def app(tiny_checkpoints):
    """(url, client) for the app on tiny checkpoints."""
    with serving(tiny_checkpoints) as (url, *_):
        yield url, Client(url, verbose=False)


def file_routes(target: str) -> list[str]:
    """Ways of asking Gradio's file routes for `target` (an absolute path), plain and by traversal."""
    up = "../" * 12 + target.lstrip("/")
    routes = []
    for prefix in ("/gradio_api/file=", "/file="):
        routes += [
            prefix + target,
            prefix + up,
            prefix + quote(up, safe=""),
            prefix + up.replace("../", "..%2f"),
            prefix + quote(target, safe=""),
        ]
    return routes


@pytest.mark.parametrize("target", ["/etc/passwd", str(REPO / "hub" / "push.py")], ids=["passwd", "project source"])
def test_files_outside_the_apps_folders_are_not_served(app, target):
    url, _ = app
    secret = Path(target).read_text()
    served = []
    for route in file_routes(target):
        response = httpx.get(url.rstrip("/") + route, timeout=10)
        if response.status_code == 200 or secret[:200] in response.text or PASSWD_LINE.search(response.text):
            served.append(f"{route} -> {response.status_code}")
    assert served == []


def test_an_output_the_app_made_is_served(app, tmp_path):
    """The refusals above mean something: the same route serves the app's own outputs."""
    url, _ = app
    raw = Client(url, verbose=False, download_files=False)  # answers carry the server's file URLs
    _, _, overlay, _ = raw.predict(handle_file(cat_photo(tmp_path / "cat.png")), api_name="/bone_age")
    response = httpx.get(overlay["url"], timeout=10)
    assert response.status_code == 200 and response.content[:3] == b"\xff\xd8\xff"  # a JPEG image (OVERLAY_FORMAT)


def test_an_api_call_naming_a_server_path_instead_of_an_upload_is_refused(app, tmp_path, monkeypatch):
    """gradio_client uploads the file first; a hand-made call can name any server path as the "uploaded" file.

    An X-ray outside the upload folder would come back decoded from /bone_age: Gradio must refuse it before our code.
    """
    url, _ = app
    decoded = []
    monkeypatch.setattr(common, "load_image", lambda path: decoded.append(path))
    outside = [cat_photo(tmp_path / "private-xray.png"), Path("/etc/passwd"), REPO / "README.md"]
    for path in outside:
        for endpoint in ("classify", "bone_age"):
            event, answer = raw_call(url, endpoint, [{"path": str(path), "meta": {"_type": "gradio.FileData"}}])
            assert event == "error", (path, endpoint, answer)
    assert decoded == []


def test_the_model_tab_refuses_pickled_weights(tiny_checkpoints, pickled_checkpoint):
    """Whatever the server was started with, a web user cannot make it unpickle a file, even in an allowed folder."""
    with serving(tiny_checkpoints, allow_local_dirs=[pickled_checkpoint.parent]) as (url, *_):
        with pytest.raises(AppError, match="pickled weights"):
            Client(url, verbose=False).predict(str(pickled_checkpoint), api_name="/load_model")


# ----------------------------------------------------------------------------- pickled weights on the command line


@pytest.fixture
def pickled_checkpoint(tiny_checkpoints, tmp_path) -> Path:
    """The tiny ViT classifier with its weights as pytorch_model.bin only."""
    folder = tmp_path / "pickled"
    model = AutoModelForImageClassification.from_pretrained(tiny_checkpoints[("vit", "classification")])
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    AutoImageProcessor.from_pretrained(tiny_checkpoints[("vit", "classification")]).save_pretrained(folder)
    return folder


def test_the_flag_the_refusal_names_exists_on_the_commands_that_load_checkpoints(
    pickled_checkpoint, tiny_checkpoints, monkeypatch, capsys, tmp_path
):
    with pytest.raises(SystemExit) as refused:
        hub_cli(["show", str(pickled_checkpoint)])
    assert "pickled weights" in str(refused.value.code) and "--allow-pickle" in str(refused.value.code)
    hub_cli(["show", str(pickled_checkpoint), "--allow-pickle"])
    assert "classification into 3 classes" in capsys.readouterr().out

    monkeypatch.setattr(demo_app, "launch", lambda demo, **_: None)  # build the app, do not serve it
    monkeypatch.setattr(torch, "set_num_threads", lambda _: None)  # keep this process's threads
    monkeypatch.chdir(tmp_path)  # the default corrections/ folder lands here, not in the checkout
    argv = ["--food-model", str(pickled_checkpoint), "--boneage-model", str(tiny_checkpoints[("vit", "regression")])]
    with pytest.raises(SystemExit, match="pickled weights.*--allow-pickle"):
        demos_main.main(argv)
    demos_main.main([*argv, "--allow-pickle"])


def test_the_server_itself_refuses_an_upload_over_the_cap(app):
    """gradio_client checks the cap before sending; a hand-made upload must be refused by the server too."""
    url, _ = app
    over_cap = b"\xff\xd8\xff" + b"\0" * (20 * 1024 * 1024)  # demos.app.MAX_FILE_SIZE is 20mb
    response = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.jpg", over_cap, "image/jpeg")}, timeout=60)
    assert response.status_code == 413 and "maximum" in response.text.lower()
