"""The cap on glibc's malloc arenas that start-up sets (its effect on RSS is in make bench)."""

from __future__ import annotations

import platform

import pytest

from replicator import runtime


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_arenas_are_capped_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert runtime.limit_malloc_arenas() is True


def test_a_cap_set_in_the_environment_is_left_to_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    calls: list[tuple[int, int]] = []

    class Libc:
        def mallopt(self, parameter: int, value: int) -> int:
            calls.append((parameter, value))
            return 1

    monkeypatch.setattr(runtime.ctypes, "CDLL", lambda _: Libc())
    assert runtime.limit_malloc_arenas() is False
    assert calls == []


def test_a_c_library_without_mallopt_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.setattr(runtime.ctypes, "CDLL", lambda _: object())
    assert runtime.limit_malloc_arenas() is False
