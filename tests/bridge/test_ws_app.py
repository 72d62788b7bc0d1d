"""`/ws/app`: the upgrade needs the password, bad input never closes the socket, slow sockets go."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from bridge.hub import AppFeed, Hub
from tests.bridge.helpers import (
    Stack,
    expect_closed,
    open_stack,
    pair_gateway,
    recv_json,
    recv_until,
    send_json,
    still_open,
)
from tests.factories import PASSWORD, make_settings


@pytest.mark.parametrize("query", ["", "?token=", "?token=wrong", "?api_key=nxg_not-a-key", "?api_key="])
async def test_upgrade_without_a_valid_credential_is_401(stack: Stack, query: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(stack.ws_url("/ws/app" + query))
    assert refused.value.response.status_code == 401
    assert b"unauthorized" in refused.value.response.body


async def test_bearer_header_is_accepted(stack: Stack) -> None:
    ws = await connect(stack.ws_url("/ws/app"), additional_headers={"Authorization": f"Bearer {PASSWORD}"})
    await still_open(ws)
    await ws.close()


BAD_INPUT = [
    ("not json", "not valid JSON", "INVALID"),
    ("[1, 2]", "JSON object", "INVALID"),
    ('{"x": 1}', 'missing "t"', "INVALID"),
    ('{"t": "telemetry"}', "unknown message type", "INVALID"),
    # commands: the core's one validation (messages.check_command_request), as the CLI gets it
    ('{"t": "cmd", "action": "go"}', "'serial' is a required property", "INVALID_COMMAND"),
    ('{"t": "cmd", "serial": "A1"}', "'action' is a required property", "INVALID_COMMAND"),
    ('{"t": "cmd", "serial": "A1", "action": 5}', "action: 5 is not of type 'string'", "INVALID_COMMAND"),
    ('{"t": "cmd", "serial": "A1", "action": "go", "target": 3}', "target: 3 is not", "INVALID_COMMAND"),
    ('{"t": "cmd", "serial": "A1", "action": "go", "params": [1]}', "params: [1] is not", "INVALID_COMMAND"),
    ('{"t": "cmd", "serial": "A1", "action": "go", "ref": {}}', "ref: {} is not", "INVALID_COMMAND"),
]


async def test_bad_input_gets_an_error_and_the_socket_stays(stack: Stack) -> None:
    app = await stack.app_socket()
    for text, fragment, code in BAD_INPUT:
        await app.send(text)
        reply = await recv_json(app)
        assert reply["t"] == "error" and reply["code"] == code, (text, reply)
        assert fragment in reply["error"], (text, reply)
    await app.send(b"\x00binary")
    assert "binary" in (await recv_json(app))["error"]
    limit = stack.core.settings.ws_max_frame_bytes
    await send_json(app, {"t": "cmd", "serial": "A1", "action": "x" * limit})
    assert "exceeds the limit" in (await recv_json(app))["error"]
    await still_open(app)
    await app.close()


async def test_refused_commands_carry_code_and_ref(stack: Stack) -> None:
    await stack.create_device("A1")
    app = await stack.app_socket()
    await send_json(app, {"t": "cmd", "serial": "Ghost", "action": "open", "ref": "r1"})
    assert await recv_json(app) == {
        "t": "error",
        "error": "device not found: Ghost",
        "code": "DEVICE_NOT_FOUND",
        "ref": "r1",
    }
    await send_json(app, {"t": "cmd", "serial": "A1", "action": "_reboot", "ref": 7})
    reply = await recv_until(app, "error")
    assert reply["code"] == "RESTRICTED_ACTION" and reply["ref"] == 7
    await send_json(app, {"t": "cmd", "serial": "A1", "action": "open", "ref": "r2"})
    accepted = await recv_until(app, "cmd_accepted")
    assert accepted["ref"] == "r2" and accepted["id"].startswith("c_")
    command = await stack.core.commands.get(accepted["id"])
    assert command is not None and command.status.value == "queued"  # A1 is offline
    await app.close()


async def test_pipelined_commands_keep_each_devices_order_and_ack_follows_cmd_accepted(stack: Stack) -> None:
    """Commands sent back to back on one socket run concurrently: each device still receives its
    commands in the order sent, every ref gets one answer, and no ack overtakes its cmd_accepted."""
    devices = {serial: (await pair_gateway(stack, serial))[0] for serial in ("p1", "p2")}
    app = await stack.app_socket()
    for i in range(20):
        serial = "p1" if i % 2 == 0 else "p2"
        await send_json(app, {"t": "cmd", "serial": serial, "action": "step", "params": {"n": i}, "ref": f"r{i}"})
    received: dict[str, list[int]] = {}
    for serial, ws in devices.items():
        for _ in range(10):
            cmd = await recv_until(ws, "cmd")
            received.setdefault(serial, []).append(cmd["params"]["n"])
            await send_json(ws, {"t": "ack", "id": cmd["id"], "ok": True})
    assert received == {"p1": list(range(0, 20, 2)), "p2": list(range(1, 20, 2))}
    accepted: dict[str, str] = {}  # command id → ref
    acked: set[str] = set()
    while len(acked) < 20:
        message = await recv_json(app)
        if message["t"] == "cmd_accepted":
            assert message["ref"] not in accepted.values()
            accepted[message["id"]] = message["ref"]
        elif message["t"] == "ack":
            assert message["id"] in accepted, f"ack before cmd_accepted: {message}"
            acked.add(message["id"])
    assert sorted(accepted.values()) == sorted(f"r{i}" for i in range(20))


async def test_pipelined_commands_cannot_overshoot_the_rate_limit(tmp_path: Path) -> None:
    async with open_stack(make_settings(tmp_path, command_rate_limit=3)) as stack:
        for serial in ("q1", "q2"):
            await stack.create_device(serial)
        app = await stack.app_socket()
        for i in range(8):
            await send_json(app, {"t": "cmd", "serial": f"q{i % 2 + 1}", "action": "go", "ref": i})
        answers = [await recv_json(app) for _ in range(8)]
        assert sorted(a["t"] for a in answers) == ["cmd_accepted"] * 3 + ["error"] * 5, answers
        assert {a["code"] for a in answers if a["t"] == "error"} == {"RATE_LIMIT_EXCEEDED"}
        assert sorted(a["ref"] for a in answers) == list(range(8))


async def test_slow_app_socket_is_closed_1013_and_never_delays_a_fast_one(tmp_path: Path) -> None:
    count, size = 1500, 8000
    async with open_stack(make_settings(tmp_path, ws_queue_limit=30)) as stack:
        fast = await stack.app_socket()
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", stack.bridge.http_port))
        raw.setblocking(False)
        slow = await connect(stack.ws_url(f"/ws/app?token={PASSWORD}"), sock=raw, max_queue=1)

        async def publish() -> None:
            for i in range(count):
                body = {"n": i, "sent": time.monotonic(), "pad": "x" * size}
                await stack.broker.publish("nxg/S1/telemetry", json.dumps(body).encode(), qos=0)
                if i % 5 == 4:
                    await asyncio.sleep(0.002)

        publisher = asyncio.create_task(publish())
        worst, seen = 0.0, 0
        async with asyncio.timeout(30):
            while seen < count:
                message = await recv_json(fast)
                if message.get("t") == "telemetry":
                    assert message["n"] == seen  # nothing lost, in order
                    worst = max(worst, time.monotonic() - message["sent"])
                    seen += 1
        await publisher
        assert worst < 1.0, f"the fast socket waited {worst:.3f}s"
        hub = stack.bridge.state.hub
        assert hub.counters.get("slow_app_closed") == 1
        assert await expect_closed(slow, within_s=10) == 1013
        await still_open(fast)
        await fast.close()


def test_a_failing_subscriber_does_not_break_the_others() -> None:
    hub = Hub(queue_limit=10)
    got: list[str] = []

    def broken(text: str) -> None:
        raise RuntimeError("boom")

    hub.subscribe(broken)
    hub.subscribe(got.append)
    hub.on_mqtt("nxg/S1/telemetry", b'{"temp": 1}', False)
    hub.on_mqtt("nxg/S1/status", b'{"door": "open"}', False)
    assert [json.loads(t)["t"] for t in got] == ["telemetry", "status"]
    assert hub.counters.get("subscriber_errors") == 2


def test_hub_translates_mqtt_into_app_messages() -> None:
    hub = Hub(queue_limit=10)
    got: list[dict[str, object]] = []
    hub.subscribe(lambda text: got.append(json.loads(text)))
    hub.on_mqtt("nxg/S1/telemetry", b'{"temp": 1, "ts": 99}', False)
    hub.on_mqtt("nxg/S1/telemetry", b'{"t": "bad"}', False)  # invalid: dropped
    hub.on_mqtt("nxg/S1/presence", b'{"online": true, "ts": 5}', True)  # retained: history, not news
    hub.on_mqtt("nxg/S1/presence", b'{"online": false, "ts": 6}', False)
    hub.on_mqtt("nxg/S1/ack", b'{"t": "ack", "id": "c_1", "ok": true}', False)
    hub.on_mqtt("nxg/S1/cmd/res", b'{"id": "c_1", "status": "acked"}', False)
    hub.on_mqtt("nxg/pair/C1", b'{"t": "pair_ok"}', False)
    assert [m["t"] for m in got] == ["telemetry", "device_offline", "ack"]
    assert got[0]["serial"] == "S1" and got[0]["device_ts"] == 99 and isinstance(got[0]["ts"], int)
    assert got[1] == {"t": "device_offline", "serial": "S1", "ts": 6}
    assert got[2]["id"] == "c_1" and got[2]["ok"] is True


async def test_feed_overflows_once_and_keeps_what_it_had() -> None:
    feed = AppFeed(2)
    for text in ("a", "b", "c", "d"):
        feed.offer(text)
    assert feed.overflowed.is_set() and feed.dropped == 2
    assert [feed.queue.get_nowait(), feed.queue.get_nowait()] == ["a", "b"]
