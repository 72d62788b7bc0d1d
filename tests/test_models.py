"""`Command.closed` is `dataclasses.replace` of the four fields an ack sets, every other field kept
(a field added to Command later and forgotten there fails this)."""

from __future__ import annotations

import dataclasses

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
