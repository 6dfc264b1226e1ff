"""Training jobs: `python -m train` in a process of its own, one at a time per server, the others waiting in line.

Each job is a folder of its session's (`<root>/<session>/<job>/`) holding the data (`data/`), the run folder
(`run/`), the command's output (`train.log`) and its progress stream (`progress.jsonl`, the JSON lines `python -m
train --progress-jsonl` writes). The process starts in that folder, so that the command a visitor is shown reads
`--dataset data --output-dir run` (or, for a hub dataset read by its id, `--dataset owner/name --output-dir run`),
in a process group of its own at a lower CPU priority (predictions keep their speed), and:
- Cancel ends the whole group (the command and any data-loading workers it started): SIGTERM, then SIGKILL;
- a run longer than the cap is ended the same way;
- a crash ends only that process: the job says it failed and shows the last lines the command printed;
- a session's folder is deleted once its jobs have ended and it has not been used for `keep_s` seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from demos.guards.priority import SLOW_WORK_NICENESS
from demos.training.choices import command_line

MAX_RUN_S = 30 * 60  # a run is ended after this: a head-only run on 2,000 photos takes a few minutes on 2 cores
KEEP_S = 6 * 3600  # a session's job folders are deleted this long after their last use
MAX_WAITING = 4  # jobs waiting behind the running one, per server; one job per session at a time
CANCEL_GRACE_S = 5.0  # between SIGTERM and SIGKILL
LAST_LINES = 15  # of a failed command's output, shown to the visitor
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # where `train` is, in a checkout (an install has it on its path)


class JobState(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed out"

    @property
    def ended(self) -> bool:
        return self not in (JobState.WAITING, JobState.RUNNING)


class JobRefused(ValueError):
    """A job cannot be queued now; the message says why (a job of the session's own, or a full line)."""


@dataclass
class Job:
    """One `python -m train` run: its folder, its arguments (relative to the folder), and what became of it."""

    session: str
    folder: Path
    argv: list[str]
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    state: JobState = JobState.WAITING
    process: subprocess.Popen | None = None
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    ended: float | None = None
    stages: int = 1  # "start" events the run writes (two-stage: the head stage, then the whole network)
    stopping: JobState | None = None  # CANCELLED or TIMED_OUT while its process is being ended
    finished: threading.Event = field(default_factory=threading.Event, repr=False)  # set once it has ended

    @property
    def run_dir(self) -> Path:
        return self.folder / "run"

    @property
    def progress_path(self) -> Path:
        return self.folder / "progress.jsonl"

    @property
    def log_path(self) -> Path:
        return self.folder / "train.log"

    @property
    def command(self) -> str:
        """The equivalent command, to copy: run in the job's folder it is this very run."""
        return command_line(self.argv)

    def events(self) -> list[dict]:
        """The progress events written so far (a line still being written is left for the next read)."""
        try:
            text = self.progress_path.read_text()
        except FileNotFoundError:
            return []
        events = []
        for line in text.splitlines(keepends=True):
            if line.endswith("\n") and line.strip():
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # not an event: the stream is the command's, a stray line must not stop the tab
        return events

    def last_lines(self, count: int = LAST_LINES) -> list[str]:
        """The last lines the command printed (progress bars' carriage-return redraws reduced to their last state)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.splitlines()]
        return [line for line in lines if line.strip()][-count:]


class JobRunner:
    """The server's training jobs: one runs, up to `max_waiting` wait in line; a session has one job at a time."""

    def __init__(
        self,
        root: Path,
        *,
        max_run_s: float = MAX_RUN_S,
        keep_s: float = KEEP_S,
        max_waiting: int = MAX_WAITING,
        python: str = sys.executable,
    ):
        self.root, self.max_run_s, self.keep_s, self.max_waiting = Path(root), max_run_s, keep_s, max_waiting
        self.python = python
        self._lock = threading.Lock()
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._jobs: dict[str, Job] = {}

    def new_folder(self, session: str) -> Path:
        """A fresh job folder of `session`'s (old sessions' folders are deleted first)."""
        self.sweep()
        folder = self.root / _safe(session) / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True)
        return folder

    def submit(self, session: str, folder: Path, argv: list[str], *, stages: int = 1) -> Job:
        """Queue `python -m train argv` to run in `folder`; it starts at once when no other job runs."""
        with self._lock:
            mine = [job for job in self._active() if job.session == session]
            if mine:
                raise JobRefused("A training run of yours is already running or waiting: cancel it first.")
            if len(self._waiting) >= self.max_waiting:
                raise JobRefused(f"{len(self._waiting)} runs are already waiting on this server: try again later.")
            job = Job(session=session, folder=Path(folder), argv=list(argv), stages=stages)
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._start_next()
        return job

    @property
    def running(self) -> Job | None:
        """The job running now, if any (for the operator: its process, its folder)."""
        return self._running

    def get(self, session: str, job_id: str) -> Job | None:
        """The job `job_id` when it is `session`'s (a visitor never reaches another's)."""
        job = self._jobs.get(job_id) if isinstance(job_id, str) else None
        return job if job is not None and job.session == session else None

    def position(self, job: Job) -> int:
        """0 while the job runs (or has ended), else how many jobs are ahead of it, the running one included."""
        with self._lock:
            if job not in self._waiting:
                return 0
            return list(self._waiting).index(job) + (self._running is not None)

    def cancel(self, job: Job) -> None:
        """Stop `job`: out of the line if it waits; its whole process group ended (and waited for) if it runs."""
        with self._lock:
            if job.state is JobState.WAITING:
                self._waiting.remove(job)
                job.state, job.ended = JobState.CANCELLED, time.monotonic()
                job.finished.set()
                return
            if job.state is not JobState.RUNNING:
                return
            job.stopping = JobState.CANCELLED  # before the kill: the watcher must not call it a failure
        _end_group(job.process)
        job.finished.wait(CANCEL_GRACE_S)  # the watcher records the end: the job is over when this returns

    def sweep(self) -> None:
        """Delete the folders of sessions whose jobs have all ended and that nothing used for `keep_s` seconds."""
        if not self.root.is_dir():
            return
        with self._lock:
            busy = {_safe(job.session) for job in self._active()}
        cutoff = time.time() - self.keep_s
        for folder in self.root.iterdir():
            if folder.is_dir() and folder.name not in busy and _last_used(folder) < cutoff:
                shutil.rmtree(folder, ignore_errors=True)

    def _active(self) -> list[Job]:
        return [*self._waiting, *([self._running] if self._running else [])]

    def _start_next(self) -> None:
        """Start the first waiting job when none runs (called with the lock held)."""
        while self._running is None and self._waiting:
            job = self._waiting.popleft()
            try:
                job.process = self._spawn(job)
            except OSError as err:  # no python, no disk: the job fails, the line moves on
                job.log_path.write_text(f"The training process could not start: {err}\n")
                job.state, job.ended = JobState.FAILED, time.monotonic()
                job.finished.set()
                continue
            job.state, job.started, self._running = JobState.RUNNING, time.monotonic(), job
            threading.Thread(target=self._watch, args=(job,), name=f"train-{job.id}", daemon=True).start()

    def _spawn(self, job: Job) -> subprocess.Popen:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if (PROJECT_ROOT / "train").is_dir():  # a checkout: `train` is importable from its root only
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        nice = ["nice", "-n", str(SLOW_WORK_NICENESS)] if shutil.which("nice") else []
        argv = [*nice, self.python, "-m", "train", *job.argv, "--progress-jsonl", job.progress_path.name]
        with job.log_path.open("wb") as log:
            return subprocess.Popen(
                argv, cwd=job.folder, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                process_group=0,  # its own group: Cancel ends the command and every worker it started
            )  # fmt: skip

    def _watch(self, job: Job) -> None:
        """Wait for the job's process (ending it past the run-time cap), record how it ended, start the next."""
        try:
            job.process.wait(timeout=self.max_run_s)
        except subprocess.TimeoutExpired:
            with self._lock:
                job.stopping = job.stopping or JobState.TIMED_OUT
            _end_group(job.process)
        with self._lock:
            job.state = job.stopping or (JobState.DONE if job.process.returncode == 0 else JobState.FAILED)
            job.ended = time.monotonic()
            job.finished.set()
            self._running = None
            self._start_next()


def _end_group(process: subprocess.Popen) -> None:
    """End a job's process group: SIGTERM, then SIGKILL after CANCEL_GRACE_S; returns once the process has ended."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass  # the group has ended already
        try:
            process.wait(timeout=CANCEL_GRACE_S)
        except subprocess.TimeoutExpired:
            continue
        if sig is signal.SIGTERM:  # the command is gone; its workers, if any stayed, go with SIGKILL
            _kill_leftovers(process.pid)
        return


def _kill_leftovers(group: int) -> None:
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _last_used(folder: Path) -> float:
    """The newest modification time of a session folder and the job folders in it."""
    return max([folder.stat().st_mtime, *(child.stat().st_mtime for child in folder.iterdir())])


def _safe(session: str) -> str:
    """A session hash as a folder name (Gradio's are alphanumeric; anything else is reduced to that)."""
    return "".join(c for c in str(session) if c.isalnum())[:64] or "local"
