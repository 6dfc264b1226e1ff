"""The README's first two commands are the project's entry points; CI must run the second verbatim."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (REPO / "README.md").read_text())


def test_ci_runs_exactly_the_readme_test_command():
    install_and_demo, install_and_test = readme_commands()[:2]
    assert install_and_demo.endswith("python -m demos")
    # the linter and the formatter gate the tests
    assert install_and_test.endswith("ruff check . && ruff format --check . && python -m pytest")
    assert install_and_test in (REPO / ".ci" / "run").read_text().splitlines()
