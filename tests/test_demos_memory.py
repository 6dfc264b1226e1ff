"""demos/serving/memory.py: the slow endpoints' wrapper gives freed memory back after each call, failed or not.

How much comes back is measured, not tested: the process's heap after other tests decides how much of a test's own
allocations were resident before (a feature map on food10: 1362 -> 1058 MiB, bench/RESULTS.md).
"""

import pytest

from demos.serving import memory


def test_the_wrapper_releases_after_a_handler_that_fails(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "release_freed_memory", lambda: calls.append("released"))

    @memory.releasing_memory
    def failing():
        calls.append("ran")
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        failing()
    assert calls == ["ran", "released"]
