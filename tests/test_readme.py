"""The README's first two commands are the project's entry points; CI must run the second verbatim."""

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (REPO / "README.md").read_text())


def test_ci_runs_exactly_the_readme_test_command():
    install_and_demo, install_and_test = readme_commands()[:2]
    assert install_and_demo.endswith("python -m demos")
    # the linter and the formatter gate the tests
    assert install_and_test.endswith("ruff check . && ruff format --check . && python -m pytest")
    assert install_and_test in (REPO / ".ci" / "run").read_text().splitlines()


def readme_training_commands() -> list[str]:
    """The Training section's `python -m train` and `python -m train.average` commands, each on one line."""
    section = (REPO / "README.md").read_text().split("## Training", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.+?)\n```", section, re.DOTALL).group(1)
    lines = re.sub(r"\\\n\s*", "", block).splitlines()
    return [line for line in lines if line.startswith(("python -m train --model", "python -m train.average "))]


@pytest.mark.parametrize("name", ["food10", "boneage"])
def test_a_shipped_card_gives_the_readmes_commands(name):
    commands = [command for command in readme_training_commands() if f"/{name} " in command]
    training = json.loads((REPO / "checkpoints" / name / "training_config.json").read_text())
    assert len(commands) >= 2 and [*training["earlier_commands"], training["command"]] == commands
    card = (REPO / "checkpoints" / name / "README.md").read_text()
    assert re.findall(r"```bash\n(python -m train(?:\.average)? .+?)\n```", card) == commands
    assert "fixres" not in card and f'"checkpoints/{name}"' in card
