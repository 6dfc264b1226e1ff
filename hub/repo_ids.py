"""Hub repo ids: the one check of every id this project creates, states in a card or publishes to.

huggingface_hub's own `validate_repo_id` judges the characters; on top of it, an id here must name its owner
(`owner/name`): a repo is created under a user or an organisation, and a card's `base_model` or `datasets` entry
links to one.
"""

from __future__ import annotations

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id


def repo_id_problem(value: str) -> str | None:
    """Why `value` is not an owner/name hub repo id, or None when it is one."""
    try:
        validate_repo_id(value)
    except HFValidationError as err:
        return str(err)
    return None if "/" in value else f"'{value}' names no owner."


def is_repo_id(value: str | None) -> bool:
    """Whether `value` is an owner/name hub repo id (a local path such as `../data` or `/home/me/run` is not)."""
    return bool(value) and repo_id_problem(value) is None


def check_repo_id(repo_id: str, *, example: str, error: type[Exception] = ValueError) -> None:
    """Refuse, before any network call, a repo id the hub would refuse or one without its owner; `error` is raised,
    saying why and showing `example` (e.g. your-name/model-name) as the form to use."""
    problem = repo_id_problem(repo_id)
    if problem:
        raise error(f"'{repo_id}' is not a repo id: use {example} (or an organisation you write to). {problem}")
