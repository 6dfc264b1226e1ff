"""Models that web visitors load in the Model tab: what they may load, whose they are, how many stay in memory.

A share link or a Space is open to anyone, so by default a visitor loads hub ids and builtin aliases only
(no folder of the server), a hub model larger than `max_model_mb` is refused before it is downloaded, a load
gives up after `load_timeout_s`, and at most `max_loaded_models` visitor models stay in memory across all
sessions (the least recently used goes first). A model one visitor loads is seen by that visitor's session
only. The operator widens these limits with `python -m demos` flags (or `build_app` arguments), never the visitor.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, TimeoutError
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gradio.context import LocalContext

from hub.serving_options import MAX_LOADED_MODELS, MAX_MODEL_MB

if TYPE_CHECKING:
    from demos.serving.inference import ServedModel

LOAD_TIMEOUT_S = 180.0  # a 1000 MB download at 50 Mbit/s takes about as long; a slower hub must not hang the tab
LOADS_AT_ONCE = 1  # a load that timed out keeps its slot until it ends, so abandoned loads cannot pile up


@dataclass(frozen=True)
class VisitorLimits:
    allowed_local_dirs: tuple[Path, ...] = ()  # resolved roots under which checkpoint folders load
    max_loaded_models: int = MAX_LOADED_MODELS
    max_model_mb: float = MAX_MODEL_MB
    load_timeout_s: float = LOAD_TIMEOUT_S


def visitor_limits(
    allowed_local_dirs: Sequence[str | Path] = (),
    max_loaded_models: int = MAX_LOADED_MODELS,
    max_model_mb: float = MAX_MODEL_MB,
) -> VisitorLimits:
    """The limits from the operator's flags, checked: each --allow-local-dir must be an existing folder."""
    roots = tuple(Path(d).expanduser().resolve() for d in allowed_local_dirs)
    missing = [str(d) for d, root in zip(allowed_local_dirs, roots) if not root.is_dir()]
    if missing:
        raise FileNotFoundError(f"--allow-local-dir {', '.join(missing)}: no such folder.")
    if max_loaded_models < 0 or max_model_mb <= 0:
        raise ValueError("--max-loaded-models must be 0 or more and --max-model-mb more than 0.")
    return VisitorLimits(roots, max_loaded_models, max_model_mb)


def current_session() -> str | None:
    """The session hash of the Gradio request this thread is serving; None outside a request."""
    # Gradio sets this context variable around every event function (gradio.utils.get_function_with_locals);
    # reading it here spares every tab from passing a gr.Request down to the models.
    request = LocalContext.request.get(None)
    return getattr(request, "session_hash", None)


class SessionModels:
    """Served models of the checkpoints visitors loaded, kept per (session, ref); the least recently used is dropped
    first, and with it its prediction and explanation copies."""

    def __init__(self, limits: VisitorLimits | None = None):
        self.limits = limits or VisitorLimits()
        self._loaded: dict[tuple[str, str], ServedModel] = {}
        self._last_use: dict[tuple[str, str], int] = {}
        self._clock = itertools.count()
        self._lock = threading.Lock()
        self._load_slots = threading.BoundedSemaphore(LOADS_AT_ONCE)

    def __len__(self) -> int:
        """How many visitor models are in memory, all sessions together."""
        with self._lock:
            return len(self._loaded)

    def names(self, session: str | None) -> list[str]:
        with self._lock:
            return [ref for owner, ref in self._loaded if owner == session]

    def get(self, session: str | None, ref: str) -> ServedModel | None:
        with self._lock:
            checkpoint = self._loaded.get((session, ref))
            if checkpoint is not None:
                self._last_use[(session, ref)] = next(self._clock)
            return checkpoint

    def load(self, session: str | None, ref: str, loader: Callable[..., ServedModel]) -> ServedModel:
        """`loader(ref, local_roots=..., max_download_mb=...)` within the limits, kept for `session` only."""
        if session is None:
            raise ValueError("Models are loaded per session and this request has none: use the web page or a client.")
        if self.limits.max_loaded_models == 0:
            raise ValueError("This demo loads no other models: its operator started it with --max-loaded-models 0.")
        return self.keep(session, ref, self.get(session, ref) or self._load_in_time(ref, loader))

    def keep(self, session: str | None, name: str, model: ServedModel) -> ServedModel:
        """Keep `model` for `session` as `name`, dropping the least recently used model beyond the limit."""
        with self._lock:
            self._loaded[(session, name)] = model
            self._last_use[(session, name)] = next(self._clock)
            while len(self._loaded) > self.limits.max_loaded_models:
                self._drop(min(self._last_use, key=self._last_use.get))
        return model

    def forget(self, session: str | None) -> None:
        """Drop a session's models (its browser tab was closed)."""
        with self._lock:
            for key in [key for key in self._loaded if key[0] == session]:
                self._drop(key)

    def _drop(self, key: tuple[str, str]) -> None:
        del self._loaded[key], self._last_use[key]

    def _load_in_time(self, ref: str, loader: Callable[..., ServedModel]) -> ServedModel:
        # A thread cannot be stopped: on timeout the visitor gets an answer and the load finishes unseen, holding
        # its slot, so a stalled hub costs at most LOADS_AT_ONCE threads. Daemon: it must not delay shutting down.
        if not self._load_slots.acquire(blocking=False):
            raise ValueError("The server is still loading another model; try again in a minute.")
        result: Future = Future()

        def run() -> None:
            try:
                result.set_result(
                    loader(ref, local_roots=self.limits.allowed_local_dirs, max_download_mb=self.limits.max_model_mb)
                )
            except Exception as err:  # noqa: BLE001  (any failure is handed to the waiting request, which shows it)
                result.set_exception(err)
            finally:
                self._load_slots.release()

        threading.Thread(target=run, name=f"load {ref}", daemon=True).start()
        try:
            return result.result(timeout=self.limits.load_timeout_s)
        except TimeoutError:
            raise ValueError(
                f"Loading '{ref}' did not finish within {self.limits.load_timeout_s:g} s (a slow hub or a large "
                "model), so it was given up; try again later or choose a smaller model."
            ) from None
