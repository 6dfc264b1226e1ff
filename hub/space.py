"""Publish the TransferLab app as a Hugging Face Space: a lasting public demo of your fine-tuned models.

    python -m hub.space your-name/food10-demo --food-model your-name/food10 [--boneage-model your-name/boneage] \
        [--private] [--prediction-precision fp32] [--out DIR]

It checks the models on the hub, writes the Space folder (default runs/space-NAME) and uploads it as one commit:

- app.py: one call of this project's app (demos.app.build_space_app) with the given model ids, and its public-demo
  defaults;
- requirements.txt: the serving pins (requirements-serve.txt, or an installed TransferLab's own dependencies),
  nothing of training; the project's own code (hub/, demos/) is copied next to app.py;
- README.md: the Spaces header (sdk and sdk_version = the pinned gradio, the licence, models, preload_from_hub so
  the Space starts without downloading its public models, hf_oauth with the scopes a push to a visitor's account
  needs) and a body that links each model and states its data
  terms. It names no path of this machine.

A model left out is stood in for by the other one (the tab then says what it lacks). A failed upload keeps
the folder and prints the command that retries it; the token (HF_TOKEN or `hf auth login`) is never shown.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import httpx2
from huggingface_hub import HfApi, ModelCard, SpaceCard, SpaceCardData, constants
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError
from huggingface_hub.utils import filter_repo_objects

from hub.constants import SAFE_CHECKPOINT_FILES
from hub.repo_ids import check_repo_id
from hub.serving_options import Precision, add_precision_option

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SERVE_REQUIREMENTS = PROJECT_ROOT / "requirements-serve.txt"  # a checkout's; a wheel's are in its metadata
# What app.py imports. Copied rather than installed from a wheel: a Space installs requirements.txt before
# the rest of its repo is in place, so a wheel file shipped in the repo could not be named there.
SPACE_PACKAGES = ("hub", "demos")
COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")
ROLES = {"food": "Food", "boneage": "Bone age"}  # role -> the tab that shows it
# "Sign in with Hugging Face" (gr.LoginButton) in the Space asks the visitor for these: the Train tab pushes to their
# account with their token, which must create a repo (manage-repos) and write to it (write-repos).
OAUTH_SCOPES = ("write-repos", "manage-repos")
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
DATA_TERMS_SECTION = re.compile(r"^## Data terms[ \t]*\n(?P<terms>.*?)(?=^## |\Z)", re.MULTILINE | re.DOTALL)

APP_TEMPLATE = '''"""The TransferLab demo, served by this Space (Spaces runs `python app.py`).

Written by `{command}`.
"""

from demos.app import build_space_app, launch_options

demo = build_space_app(food_model={food!r}, boneage_model={boneage!r}, prediction_precision={precision!r})

if __name__ == "__main__":
    # No server_name/port here: Spaces sets GRADIO_SERVER_NAME and GRADIO_SERVER_PORT.
    demo.launch(**launch_options())
'''

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

The TransferLab demo app, serving fine-tuned vision checkpoints: classify a food photo, estimate bone age
from a hand X-ray, and look inside the network (feature maps, Grad-CAM, class visualisation,
adversarial examples). Every tab is also an API endpoint (`/classify`, `/bone_age`, ...): see "Use via API".

## Models

| tab | model |
|---|---|
{% for model in models -%}
| {{ model.tabs }} | [{{ model.repo_id }}]({{ model.url }}) |
{% endfor %}
{% for model in models if model.private -%}
{{ model.repo_id }} is private: the Space's build cannot preload it, so the app downloads it when it starts, which
needs an `HF_TOKEN` secret (Settings of the Space) that can read it.
{% endfor %}
## Data terms

{% for model in models -%}
- **[{{ model.repo_id }}]({{ model.url }})**: {{ model.data_terms }}
{% endfor %}
## Update or delete

The Space was written and uploaded by the command below; re-run it to change the models or to ship a newer
TransferLab (a new commit rebuilds the Space).

```bash
{{ command }}
```

A new version pushed to the same model id is served after a restart (`hf spaces restart {{ space_id }}`, or
the Settings page): at start the app fetches each model's latest commit. Delete the Space in its Settings page,
or with `hf repos delete {{ space_id }} --repo-type space`.
"""


class SpaceError(RuntimeError):
    """The Space cannot be built or published; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class HubModel:
    """What the Space needs to know of a model repo: its files to preload, licence and data terms."""

    repo_id: str
    files: tuple[str, ...]
    license: str | None
    license_name: str | None  # the name of an "other" licence, e.g. research-only
    data_terms: str
    private: bool = False  # a Space's build cannot preload it

    @property
    def url(self) -> str:
        return f"{constants.ENDPOINT}/{self.repo_id}"


def card_data_terms(card: ModelCard | None, repo_id: str) -> str:
    """The "Data terms" section of a model card, or a sentence saying the card states none."""
    match = DATA_TERMS_SECTION.search(card.text) if card else None
    if match and match.group("terms").strip():
        return " ".join(match.group("terms").split())
    return f"its model card states no data terms: check {constants.ENDPOINT}/{repo_id} before reusing it."


def describe_model(api: HfApi, repo_id: str) -> HubModel:
    """Check that `repo_id` is a loadable checkpoint on the hub, and read what the Space card states of it."""
    try:
        info = api.model_info(repo_id)
        names = [sibling.rfilename for sibling in info.siblings or []]
        card = ModelCard.load(api.hf_hub_download(repo_id, "README.md")) if "README.md" in names else None
    except GatedRepoError as err:
        raise SpaceError(
            f"'{repo_id}' is gated: a Space cannot accept its terms for visitors; use an ungated model."
        ) from err
    except RepositoryNotFoundError as err:
        raise SpaceError(
            f"No model '{repo_id}' on the hub (or it is private and your token cannot read it). "
            f"Push it first: python -m hub push RUN_DIR {repo_id}"
        ) from err
    except OfflineModeIsEnabled as err:
        raise SpaceError("HF_HUB_OFFLINE=1 is set: publishing a Space needs the hub. Unset it and retry.") from err
    except (HfHubHTTPError, httpx2.HTTPError, OSError) as err:
        raise SpaceError(
            f"Could not check '{repo_id}' on the hub ({type(err).__name__}: {err}); retry when it answers."
        ) from err
    missing = [name for name in ("config.json", "model.safetensors") if name not in names]
    if missing:
        raise SpaceError(
            f"'{repo_id}' lacks {', '.join(missing)}: the app loads only checkpoints with safetensors weights. "
            f"Push a complete run folder with python -m hub push RUN_DIR {repo_id}"
        )
    return HubModel(
        repo_id=repo_id,
        files=tuple(filter_repo_objects(names, allow_patterns=SAFE_CHECKPOINT_FILES)),
        license=card.data.license if card else None,
        license_name=card.data.get("license_name") if card else None,
        data_terms=card_data_terms(card, repo_id),
        private=bool(info.private),
    )


def serving_requirements(path: Path = SERVE_REQUIREMENTS) -> list[str]:
    """What serving needs, as requirement lines: a checkout's requirements-serve.txt, else the base dependencies of
    the installed TransferLab (a wheel carries no requirement files; its metadata holds the same pins, and the
    [train] extra's are left out: the Space never trains)."""
    if path.is_file():
        lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
        return [line for line in lines if line]
    try:
        return [line for line in metadata.requires("transferlab") or [] if ";" not in line]
    except metadata.PackageNotFoundError:
        raise SpaceError(
            f"{path} is missing and TransferLab is not installed: build the Space from a checkout, or install it "
            "(pip install .)."
        ) from None


def pinned_requirements(path: Path = SERVE_REQUIREMENTS) -> list[str]:
    """The serving requirements, each an exact `name==version` pin."""
    requirements = serving_requirements(path)
    unpinned = [line for line in requirements if "==" not in line]
    if unpinned:
        raise SpaceError(
            f"The Space's requirements must pin exact versions (name==version), to be reproducible: "
            f"{', '.join(unpinned)}"
        )
    return requirements


def pinned_version(requirements: list[str], package: str) -> str:
    pins = {line.split("==")[0].strip().lower(): line.split("==")[1].strip() for line in requirements}
    if package not in pins:
        raise SpaceError(f"The serving requirements do not pin {package}, which the Space's sdk_version needs.")
    return pins[package]


def role_models(food_model: str | None, boneage_model: str | None) -> dict[str, str]:
    """{role: repo id}; a role left out is stood in for by the other model (its tab says what it lacks)."""
    if not food_model and not boneage_model:
        raise SpaceError(
            "Give the Space a model: --food-model your-name/food10 and/or --boneage-model your-name/boneage."
        )
    return {"food": food_model or boneage_model, "boneage": boneage_model or food_model}


def space_license(models: list[HubModel]) -> dict[str, str]:
    """The header's licence: the models' when they share one; else "other", with the name their cards give it (e.g.
    research-only) and a link to the README's data terms, as the hub asks of an "other" licence."""
    licenses = {(model.license, model.license_name) for model in models}
    (license, name), shared = next(iter(licenses)), len(licenses) == 1
    if shared and license not in (None, "other"):
        return {"license": license}
    return {
        "license": "other",
        "license_name": name if shared and name else "mixed",
        "license_link": "README.md#data-terms",
    }


def space_card(
    space_id: str, roles: dict[str, str], models: list[HubModel], *, gradio_version: str, command: str
) -> SpaceCard:
    """The Space's README.md: the Spaces configuration header and a body linking each model with its data terms."""
    card_data = SpaceCardData(
        title=f"TransferLab: {space_id.split('/')[1]}",
        sdk="gradio",
        sdk_version=gradio_version,
        python_version=PYTHON_VERSION,
        app_file="app.py",
        **space_license(models),
        models=[model.repo_id for model in models],
        tags=["transferlab", "image-classification", "computer-vision", "gradio"],
        emoji="🔬",
        colorFrom="yellow",
        colorTo="blue",
        short_description="Fine-tuned vision models in the TransferLab app",
        hf_oauth=True,
        hf_oauth_scopes=list(OAUTH_SCOPES),
        # Downloaded when the Space is built, into the cache the app loads from: it starts without fetching them.
        # The build has no token: a private model is left out (the app downloads it at start, with HF_TOKEN).
        preload_from_hub=[f"{model.repo_id} {','.join(model.files)}" for model in models if not model.private],
    )
    tabs = {
        model.repo_id: ", ".join(ROLES[role] for role, ref in roles.items() if ref == model.repo_id) for model in models
    }
    rows = [
        {
            "repo_id": model.repo_id,
            "url": model.url,
            "tabs": tabs[model.repo_id],
            "data_terms": model.data_terms,
            "private": model.private,
        }
        for model in models
    ]
    return SpaceCard.from_template(
        card_data, template_str=CARD_TEMPLATE, title=card_data.title, models=rows, command=command, space_id=space_id
    )


def space_command(space_id: str, *, given: dict[str, str | None], private: bool, precision: str) -> str:
    """The command that builds and uploads this Space again (also its update command), as the Space's README and
    app.py state it: without --out, which is a folder of the publisher's machine."""
    args = ["python", "-m", "hub.space", space_id]
    args += ["--food-model", given["food"]] if given["food"] else []
    args += ["--boneage-model", given["boneage"]] if given["boneage"] else []
    args += ["--private"] if private else []
    args += ["--prediction-precision", precision] if precision != Precision.FP32 else []
    return shlex.join(args)


def build_space_folder(
    out: Path, *, roles: dict[str, str], precision: str, card: SpaceCard, requirements: list[str], command: str
) -> Path:
    """Write app.py, requirements.txt, README.md and the project's packages into `out` (replacing what was there)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    app = APP_TEMPLATE.format(command=command, food=roles["food"], boneage=roles["boneage"], precision=precision)
    (out / "app.py").write_text(app)
    header = "# What TransferLab needs to serve (no training); its code (hub/, demos/) is next to app.py.\n"
    (out / "requirements.txt").write_text(header + "\n".join(requirements) + "\n")
    card.save(out / "README.md")
    for package in SPACE_PACKAGES:
        shutil.copytree(PROJECT_ROOT / package, out / package, ignore=COPY_IGNORE)
    return out


def default_space_folder(space_id: str) -> Path:
    return Path("runs") / f"space-{space_id.split('/')[1]}"


def publish_space(
    space_id: str,
    *,
    food_model: str | None = None,
    boneage_model: str | None = None,
    private: bool = False,
    prediction_precision: str = Precision.FP32.value,
    out: Path | None = None,
    token: str | None = None,
    retry_delays: list[float] | None = None,
):
    """Check the models on the hub, write the Space folder and upload it as one commit; returns the CommitInfo.

    Raises SpaceError for a bad Space id or model, PushError (folder kept, retry command in the message) when the
    upload fails.
    """
    from hub.push import upload_with_retries

    check_repo_id(space_id, example="your-name/space-name", error=SpaceError)
    precision = Precision(prediction_precision).value  # bf16 is checked where the Space runs: it needs that CPU
    roles = role_models(food_model, boneage_model)
    out = Path(out) if out else default_space_folder(space_id)
    requirements = pinned_requirements()
    api = HfApi(token=token)
    models = [describe_model(api, repo_id) for repo_id in dict.fromkeys(roles.values())]
    given = {"food": food_model, "boneage": boneage_model}
    command = space_command(space_id, given=given, private=private, precision=precision)
    card = space_card(space_id, roles, models, gradio_version=pinned_version(requirements, "gradio"), command=command)
    build_space_folder(out, roles=roles, precision=precision, card=card, requirements=requirements, command=command)
    for model in models:
        if model.private:
            print(
                f"note: {model.repo_id} is private: left out of preload_from_hub (a Space's build cannot read it); "
                "the app downloads it at start with an HF_TOKEN secret of the Space that can read it."
            )
    return upload_with_retries(
        out,
        space_id,
        retry=shlex.join([*shlex.split(command), "--out", str(out)]),  # the retry writes the same folder again
        what="Space folder",
        repo_type="space",
        private=private,
        token=token,
        commit_message=f"TransferLab demo of {', '.join(model.repo_id for model in models)}",
        retry_delays=retry_delays,
    )


def space_url(space_id: str) -> str:
    return f"{constants.ENDPOINT}/spaces/{space_id}"


def published_message(space_id: str, *, private: bool, commit) -> str:
    """What a command that published a Space prints: the Space's address, then the commit's."""
    visibility = "private" if private else "public"
    return f"Published {space_id} ({visibility}): {space_url(space_id)}\nCommit: {commit.commit_url}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m hub.space", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("space_id", help="the Space to create or update: your-name/space-name")
    parser.add_argument("--food-model", help="hub id of the classifier the Food tab serves")
    parser.add_argument("--boneage-model", help="hub id of the regression model the Bone age tab serves")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument("--out", type=Path, help="where to write the Space folder (default runs/space-NAME)")
    add_precision_option(parser, "the Space's predictions")
    args = parser.parse_args(argv)
    from hub.push import PushError  # after parsing: it imports torch and transformers

    try:
        commit = publish_space(
            args.space_id,
            food_model=args.food_model,
            boneage_model=args.boneage_model,
            private=args.private,
            prediction_precision=args.prediction_precision,
            out=args.out,
        )
    except (SpaceError, PushError) as err:
        sys.exit(f"error: {err}")
    print(published_message(args.space_id, private=args.private, commit=commit))


if __name__ == "__main__":
    main()
