"""One guarded fan-out: a listener that raises is logged and counted; the others still run."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from nxg_mqtt.listeners import call_all, notify_all

log = logging.getLogger("tests.listeners")


async def test_notify_all_runs_every_listener_and_counts_failures(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, int]] = []

    async def first(name: str, n: int) -> None:
        seen.append(("first", n))

    async def broken(name: str, n: int) -> None:
        raise RuntimeError("bug")

    async def last(name: str, n: int) -> None:
        seen.append(("last", n))

    with caplog.at_level(logging.ERROR, logger="tests.listeners"):
        failed = await notify_all([first, broken, last], "x", 1, log=log, what="a test listener")
    assert failed == 1 and seen == [("first", 1), ("last", 1)]
    assert "a test listener failed" in caplog.text and "RuntimeError: bug" in caplog.text


def test_call_all_survives_a_listener_that_unsubscribes_another() -> None:
    seen: list[str] = []
    listeners: list[Callable[[str], None]] = []

    def remover(text: str) -> None:
        listeners.remove(follower)
        seen.append("remover")

    def follower(text: str) -> None:
        seen.append("follower")

    listeners.extend([remover, follower])
    assert call_all(listeners, "m", log=log, what="x") == 0
    assert seen == ["remover", "follower"], "a snapshot: this round still reaches everyone"
