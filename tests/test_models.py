"""`DeviceClock` gives one device strictly increasing stamps (history pages on a ts).

`Command.closed` is `dataclasses.replace` of the four fields an ack sets, every other field kept
(a field added to Command later and forgotten there fails this)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nxg_mqtt import models
from nxg_mqtt.models import Command, CommandStatus


def test_closed_is_replace_of_the_ack_fields() -> None:
    command = Command(
        id="c_1",
        serial="S1",
        action="light_on",
        target="lamp",
        params={"b": 1},
        status=CommandStatus.DISPATCHED,
        created_at=1,
        expires_at=2,
        source="ws",
        ref="r",
        error="e",
        result={"r": 0},
        dispatched_at=3,
        finished_at=4,
    )
    assert len(dataclasses.fields(Command)) == 14  # each one set to a value of its own above
    closed = command.closed(CommandStatus.FAILED, 9, "broke", {"x": 2})
    assert closed == dataclasses.replace(
        command, status=CommandStatus.FAILED, finished_at=9, error="broke", result={"x": 2}
    )


def test_a_device_never_gets_the_same_stamp_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = models.DeviceClock()
    monkeypatch.setattr(models, "now_ms", lambda: 1000)
    assert [clock.stamp("S1") for _ in range(3)] == [1000, 1001, 1002]
    assert clock.stamp("s1") == 1003  # serials are case-insensitive, as everywhere
    assert clock.stamp("S2") == 1000  # another device keeps the plain time
    monkeypatch.setattr(models, "now_ms", lambda: 1002)
    assert clock.stamp("S1") == 1004 and clock.stamp("S2") == 1002
    monkeypatch.setattr(models, "now_ms", lambda: 2000)
    assert clock.stamp("S1") == 2000  # back on the clock once it passed


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["a", "B", "b", "c"]), st.integers(0, 3)), max_size=60))
def test_stamps_strictly_increase_per_device_and_never_run_behind_the_clock(steps: list[tuple[str, int]]) -> None:
    clock = models.DeviceClock()
    now = 10_000
    last: dict[str, int] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models, "now_ms", lambda: now)
        for serial, advance in steps:
            now += advance
            ts = clock.stamp(serial)
            assert ts >= now
            assert ts > last.get(serial.lower(), -1)
            last[serial.lower()] = ts
