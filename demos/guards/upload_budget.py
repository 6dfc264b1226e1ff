"""A budget of upload bytes per client, so that one visitor cannot fill the server's disk with uploads.

Gradio's upload route (`/gradio_api/upload`) runs outside the queue and caps the size of each file (20 MB here),
not how many a client sends: a script could store gigabytes a minute in Gradio's cache, which is swept of day-old
files only. `UploadBudget` is an ASGI middleware (given to the app at launch) that lets each client address upload
at most `UPLOAD_MB_PER_CLIENT` megabytes in any `WINDOW_S` seconds, judged from the request's Content-Length before
anything is read, and refuses the rest with HTTP 429. The address is the one uvicorn resolves
(demos/guards/queue_limits.py says which); a request without a Content-Length is refused (411), since its size could
not be judged up front.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque

from starlette.responses import JSONResponse

from demos.guards.refusals import tell_operator

# A Batch run of 200 phone photos (3 MB each) is 600 MB: a thousand leaves room for it and a few more uploads an hour.
UPLOAD_MB_PER_CLIENT = 1000
WINDOW_S = 3600
BYTES_PER_MB = 1_000_000
UPLOAD_ROUTE = "/gradio_api/upload"


class UploadBudget:
    """ASGI middleware: at most `megabytes` of uploads per client address in any `window_s` seconds."""

    def __init__(self, app, *, megabytes: float = UPLOAD_MB_PER_CLIENT, window_s: float = WINDOW_S):
        self.app = app
        self.budget = megabytes * BYTES_PER_MB
        self.window_s = window_s
        self.spent: dict[str, deque[tuple[float, int]]] = defaultdict(deque)  # address -> (when, bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].endswith(UPLOAD_ROUTE):
            if (refusal := self.refusal(scope)) is not None:
                status, message = refusal
                tell_operator("upload", message)
                await JSONResponse({"detail": message}, status_code=status)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope) -> tuple[int, str] | None:
        """(HTTP status, message) refusing this upload, or None after charging it to its client's budget."""
        headers = dict(scope["headers"])
        if not headers.get(b"content-length", b"").isdigit():
            return 411, "An upload must state its size (Content-Length)."
        size = int(headers[b"content-length"])
        address = scope["client"][0] if scope.get("client") else "unknown"
        now = time.monotonic()
        self.forget_before(now - self.window_s)
        spent = self.spent[address]
        if sum(charged for _, charged in spent) + size > self.budget:
            return 429, (
                f"You have uploaded {self.budget / BYTES_PER_MB:.0f} MB in the last {self.window_s / 60:.0f} "
                "minutes, as much as this demo takes from one visitor: try again later."
            )
        spent.append((now, size))
        return None

    def forget_before(self, moment: float) -> None:
        """Drop the charges made before `moment`, and the addresses left with none (so the table stays small)."""
        for address in list(self.spent):
            charges = self.spent[address]
            while charges and charges[0][0] < moment:
                charges.popleft()
            if not charges:
                del self.spent[address]
