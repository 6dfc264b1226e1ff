"""Bounds on the jobs the queue takes, so that a flood is refused at the door and cheap endpoints keep answering.

gradio 6.31 bounds its queue with one global `max_size`, so jobs nobody waits for (raw `/gradio_api/call/dream`
POSTs) fill it and every endpoint answers "Queue is full". `limit_queue` puts a check in front of gradio's
`Queue.push`; a job is refused there, before it is queued, when
- its client already holds `per_client` jobs (queued or running), or `expensive_per_client` jobs in the expensive
  groups: a client is its session hash AND its IP address, each counted on its own, since every anonymous
  `/gradio_api/call/<api>` POST gets a fresh session hash;
- or `waiting_per_expensive_group` jobs already wait in its expensive concurrency group, whoever sent them.
The refusal is an HTTP 429 whose `detail` says what to do (the web page shows it; a raw API client reads it) with
a Retry-After header, and one line on the operator's console. A job whose file payloads name anything but an upload
(demos/guards/uploads.py) is refused there too, with HTTP 400 and the one message of demos/guards/uploads.py.

The jobs held are read from gradio's own records (`Queue.event_ids_to_events`: queued and running jobs, until
they end), so nothing here has to notice when a job ends, fails or is cancelled.

The client's IP is `request.client.host` as uvicorn sets it. gradio starts uvicorn with its defaults, which
take the address from X-Forwarded-For only when the peer is a trusted proxy (FORWARDED_ALLOW_IPS, by default the
loopback), and then the last address before the trusted hops, the one a forger cannot choose. So a visitor
through a share link (whose tunnel client connects from the loopback and forwards the visitor's address) is
counted by their own address, and a client connecting directly cannot pose as someone else with the header.
In a Hugging Face Space every request comes from the Space's proxies, on private networks: its app.py trusts those
(`SPACE_PROXIES`) in the same way, so that visitors there are counted apart too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import gradio as gr
from fastapi import HTTPException, status
from gradio import route_utils
from gradio.queueing import Event, Queue
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from demos.guards.refusals import tell_operator
from demos.guards.uploads import NOT_AN_UPLOAD, names_only_uploads

# The versions whose Queue.push, Event and event_ids_to_events were read. Another version may have changed them:
# `limit_queue` then refuses to start (tests/test_hostile_flood.py says so too); check, then widen this.
PATCHED_GRADIO = SpecifierSet("==6.31.*")

# A visitor clicking through the tabs holds one or two jobs at a time (an upload's prediction, a list refreshing);
# four leaves room for that beside a running class visualisation, and is far below what a flood needs.
MAX_JOBS_PER_CLIENT = 4
# One expensive job running and one waiting behind it: the rest of a client's four stay free for cheap endpoints.
MAX_EXPENSIVE_JOBS_PER_CLIENT = 2
# Jobs waiting in one expensive group, whoever sent them: a dream takes seconds to minutes, so more would wait
# longer than anyone keeps the page open; many clients (or forged sessions) cannot queue more than this.
MAX_WAITING_PER_EXPENSIVE_GROUP = 8
RETRY_AFTER_S = 60
# uvicorn's FORWARDED_ALLOW_IPS for a Space: the loopback and the private networks its proxies connect from. The
# client is then the last address in X-Forwarded-For that is none of these: the one the outermost proxy saw.
SPACE_PROXIES = "127.0.0.1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"


class GradioVersionError(RuntimeError):
    """The installed gradio is not one whose queue `limit_queue` was written for."""


@dataclass(frozen=True)
class QueueLimits:
    expensive_groups: frozenset[str]  # concurrency ids of the expensive endpoints
    per_client: int = MAX_JOBS_PER_CLIENT
    expensive_per_client: int = MAX_EXPENSIVE_JOBS_PER_CLIENT
    waiting_per_expensive_group: int = MAX_WAITING_PER_EXPENSIVE_GROUP


def client_ip(request) -> str:
    """The address uvicorn resolved for the request (see the module's docstring), or "unknown" without one."""
    client = getattr(request, "client", None)
    return client.host if client and client.host else "unknown"


def refusal(queue: Queue, limits: QueueLimits, session_hash: str | None, ip: str, group: str) -> str | None:
    """Why a new job of `group` from (`session_hash`, `ip`) may not be queued now, or None when it may."""
    expensive = group in limits.expensive_groups
    held = [event for event in queue.event_ids_to_events.values() if is_same_client(event, session_hash, ip)]
    if len(held) >= limits.per_client:
        return (
            f"Too many requests at once: you already have {len(held)} running or waiting (at most "
            f"{limits.per_client}). Wait for them to finish, then try again."
        )
    if expensive and sum(event.concurrency_id in limits.expensive_groups for event in held) >= (
        limits.expensive_per_client
    ):
        return (
            f"You already have {limits.expensive_per_client} slow jobs (class images, attacks, batches, feature "
            "maps, model loads) running or waiting: wait for one to finish, then try again."
        )
    waiting = queue.event_queue_per_concurrency_id.get(group)
    if expensive and waiting is not None and len(waiting.queue) >= limits.waiting_per_expensive_group:
        return "This part of the demo is busy right now: try again in a minute. (Predictions still answer.)"
    return None


def is_same_client(event: Event, session_hash: str | None, ip: str) -> bool:
    return (session_hash is not None and event.session_hash == session_hash) or client_ip(event.request) == ip


def refused(fn, ip: str, reason: str, status_code: int, headers: dict[str, str] | None = None) -> HTTPException:
    """The HTTP error that refuses a job with `reason`, after saying so in one line on the operator's console."""
    tell_operator(fn.api_name or "(a page event)", f"{reason} (client {ip})")
    return HTTPException(status_code=status_code, detail=reason, headers=headers)


def limit_queue(demo: gr.Blocks, limits: QueueLimits, gradio_version: str = gr.__version__) -> None:
    """Check `limits` before gradio's `Queue.push` on `demo`'s queue (made by `demo.queue()`, called before this)."""
    if Version(gradio_version) not in PATCHED_GRADIO:
        raise GradioVersionError(
            f"gradio {gradio_version}: demos/guards/queue_limits.py hooks the queue of gradio {PATCHED_GRADIO} and "
            "would leave the demo open to queue floods on this one: check Queue.push there, then widen PATCHED_GRADIO."
        )
    queue = demo._queue
    gradio_push = queue.push
    # Pushes are checked and queued one at a time, so that two pushes from one client cannot both pass the check
    # before either is recorded. A push is quick: it only queues the job.
    one_at_a_time = asyncio.Lock()

    async def limited_push(body, request, username):
        try:
            fn = route_utils.get_fn(demo, None, body)
        except (KeyError, TypeError, route_utils.FnIndexInferError):  # a body gradio cannot place is left to it
            return await gradio_push(body=body, request=request, username=username)
        ip = client_ip(request)
        if not names_only_uploads(fn.inputs, body.data):
            raise refused(fn, ip, NOT_AN_UPLOAD, status.HTTP_400_BAD_REQUEST)
        async with one_at_a_time:
            if (reason := refusal(queue, limits, body.session_hash, ip, fn.concurrency_id)) is not None:
                raise refused(fn, ip, reason, status.HTTP_429_TOO_MANY_REQUESTS, {"Retry-After": str(RETRY_AFTER_S)})
            return await gradio_push(body=body, request=request, username=username)

    queue.push = limited_push
