from __future__ import annotations

from tests.bridge.helpers import Stack, pair_gateway, recv_until, send_json


async def test_health(stack: Stack) -> None:
    response = await stack.http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "broker": True, "store": True}


async def test_ws_device_telemetry_reaches_app(stack: Stack) -> None:
    app = await stack.app_socket()
    device, _token = await pair_gateway(stack, "WS1")
    online = await recv_until(app, "device_online", serial="WS1")
    assert isinstance(online["ts"], int)
    await send_json(device, {"t": "telemetry", "temp": 21.5, "ts": 1234})
    telemetry = await recv_until(app, "telemetry", serial="WS1")
    assert telemetry["temp"] == 21.5
    assert telemetry["device_ts"] == 1234
    await send_json(app, {"t": "cmd", "serial": "WS1", "target": "t1", "action": "open", "ref": "r1"})
    accepted = await recv_until(app, "cmd_accepted")
    cmd = await recv_until(device, "cmd")
    assert cmd["id"] == accepted["id"]
    await send_json(device, {"t": "ack", "id": cmd["id"], "ok": True})
    ack = await recv_until(app, "ack", id=cmd["id"])
    assert ack["serial"] == "WS1"
    await device.close()
    await recv_until(app, "device_offline", serial="WS1")
    await app.close()
