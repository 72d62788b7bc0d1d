"""`/ws/app` frames written once per loop turn straight to uvicorn's transport (bridge/app_output.py):
every frame arrives whole and in order (parsed by the websockets library), many frames share a
write, and behind another ASGI server the ordinary `send` still carries them."""

from __future__ import annotations

from pathlib import Path

from websockets.asyncio.client import connect

from tests.bridge.helpers import Stack, pair_gateway, recv_json, recv_until, send_json
from tests.bridge.test_realtime_writer import plain_asgi_server
from tests.factories import PASSWORD

COUNT = 300


async def test_answers_of_one_burst_share_writes_and_keep_their_order(stack: Stack) -> None:
    app = await stack.app_socket()
    # 7-bit and 16-bit frame lengths (an input frame is at most ws_max_frame_bytes, 64 kB)
    refs = [f"r{i}-" + "x" * (i * 211 % 60_000) for i in range(COUNT)]
    for ref in refs:
        await send_json(app, {"t": "cmd", "serial": "no-such-device", "action": "go", "ref": ref})
    answers = [await recv_json(app) for _ in range(COUNT)]
    assert [a["ref"] for a in answers] == refs  # one device's answers: in the order sent
    assert {a["code"] for a in answers} == {"DEVICE_NOT_FOUND"}
    counters = stack.bridge.state.hub.counters
    assert counters.get("app_direct_frames") == COUNT
    assert counters.get("app_direct_writes") < COUNT  # the answers of one loop turn went out together


async def test_an_ack_never_overtakes_its_cmd_accepted_on_the_direct_path(stack: Stack) -> None:
    device, _ = await pair_gateway(stack, "o1")
    app = await stack.app_socket()
    for i in range(50):
        await send_json(app, {"t": "cmd", "serial": "o1", "action": "go", "params": {"n": i}, "ref": i})
    for _ in range(50):
        cmd = await recv_until(device, "cmd")
        await send_json(device, {"t": "ack", "id": cmd["id"], "ok": True})
    accepted: list[int] = []
    acked: set[str] = set()
    ids: dict[str, int] = {}
    while len(acked) < 50:
        message = await recv_json(app)
        if message["t"] == "cmd_accepted":
            ids[message["id"]] = message["ref"]
            accepted.append(message["ref"])
        elif message["t"] == "ack":
            assert message["id"] in ids, f"ack before its cmd_accepted: {message}"
            assert message["id"] not in acked
            acked.add(message["id"])
    assert accepted == list(range(50))  # one device: accepted in the order sent, one answer per ref
    assert stack.bridge.state.hub.counters.get("app_direct_frames") >= 100


async def test_another_server_carries_the_frames_through_asgi_send(tmp_path: Path) -> None:
    async with (
        plain_asgi_server(tmp_path) as (port, _, state),
        connect(f"ws://127.0.0.1:{port}/ws/app?token={PASSWORD}") as app,
    ):
        for i in range(20):
            await send_json(app, {"t": "ping"} if i % 2 else {"t": "cmd", "serial": "nope", "action": "a", "ref": i})
        answers = [await recv_json(app) for _ in range(20)]
        assert [a["t"] for a in answers] == ["error", "pong"] * 10
        assert state.hub.counters.get("app_direct_frames") == 0
