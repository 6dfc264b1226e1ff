"""demos/serving/memory.py: freed memory goes back to the system after heavy work, on glibc."""

import ctypes.util
import os

import psutil
import pytest

from demos.serving import memory

CHUNK = 64 * 1024  # below glibc's mmap threshold: served from the heap, which free() alone keeps
CHUNKS = 3000  # ~190 MB


def test_memory_freed_inside_the_heap_is_given_back():
    if memory._malloc_trim() is None:
        pytest.skip(f"no malloc_trim in this C library ({ctypes.util.find_library('c')}): nothing to give back")
    process = psutil.Process(os.getpid())
    memory.release_freed_memory()
    before = process.memory_info().rss
    # Freed chunks with live ones between them: free() can return none of it, as after a Grad-CAM's activations.
    chunks = [(bytearray(CHUNK), bytearray(64)) for _ in range(CHUNKS)]
    keep = [small for _, small in chunks]
    del chunks
    held = process.memory_info().rss
    memory.release_freed_memory()
    released = process.memory_info().rss
    assert held - before > 100 * 2**20, "the freed chunks were not kept: nothing to test"
    assert held - released > 100 * 2**20
    assert keep


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
