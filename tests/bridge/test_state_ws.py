"""`/ws/state` (seed 002): 401 at the upgrade without a credential, `state_update` for the status
changes of the devices in scope (with the ts history holds), text `ping` → `pong`."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.bridge.helpers import PASSWORD, Stack, expect_closed, pair_gateway, recv_json, send_json


async def test_upgrade_without_a_valid_credential_is_401(stack: Stack) -> None:
    for query in ("", "?token=wrong", "?token=nxg_unknown"):
        with pytest.raises(InvalidStatus) as refused:
            await connect(stack.ws_url(f"/ws/state{query}"))
        assert refused.value.response.status_code == 401


async def test_state_updates_of_devices_in_scope_and_ping_pong(stack: Stack) -> None:
    mine, _ = await pair_gateway(stack, "st1")
    other, _ = await pair_gateway(stack, "st2")
    key = await stack.http.post("/api/v1/auth/api-keys", json={"name": "s", "role": "viewer", "devices": ["st1"]})
    scoped = await connect(stack.ws_url(f"/ws/state?token={key.json()['key']}"))
    everything = await connect(stack.ws_url(f"/ws/state?token={PASSWORD}"))
    await scoped.send("ping")
    assert await scoped.recv() == "pong"
    await send_json(other, {"t": "status", "door": "open"})
    await send_json(other, {"t": "telemetry", "temp": 3})  # not a state change
    await send_json(mine, {"t": "status", "light": "on", "brightness": 100, "ts": 5})
    update = await recv_json(everything)
    assert update == {
        "type": "state_update",
        "device_id": "st2",
        "state": {"door": "open"},
        "timestamp": update["timestamp"],
    }
    assert isinstance(update["timestamp"], int)
    update = await recv_json(everything)
    assert update["device_id"] == "st1" and update["state"] == {"light": "on", "brightness": 100}
    got = await recv_json(scoped)  # st2 is outside its scope: the first it sees is st1's
    assert got["device_id"] == "st1" and got["state"] == {"light": "on", "brightness": 100}
    await stack.core.ingest.flush()
    stored = await stack.core.store.messages.query("st1", limit=10)
    assert got["timestamp"] == next(m.ts for m in stored if m.type.value == "status")
    await scoped.send("hello")
    assert json.loads(await scoped.recv())["type"] == "error"
    # revoking its key closes the socket (1008)
    await stack.http.post("/api/v1/auth/api-keys/revoke", json={"id": key.json()["id"]})
    assert await expect_closed(scoped) == 1008
    for ws in (everything, mine, other):
        await ws.close()
