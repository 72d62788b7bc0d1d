"""`/ws/state` (seed 002): the state changes of every device in the credential's scope.

    wss://host/ws/state?token=<admin password or API key>
    ← {"type":"state_update","device_id":S,"state":{…status fields…},"timestamp":ms}
    → ping   ← pong   (text frames)

Any credential of PROTOCOL §5 with `read:devices` (`?token=`, `?api_key=`, Bearer, X-API-Key);
without one the upgrade is refused with HTTP 401. A `state_update` is sent for every status a
device of the caller's tenant (and device list) reports; `timestamp` is the server's receive
time, the `ts` history holds. Other text is answered with `{"type":"error","error"}`. A socket
that cannot keep up is closed with 1013, one whose key is revoked or rotated with 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from starlette.websockets import WebSocket

from bridge.hub import AppFeed
from bridge.state import state_of
from bridge.tasks import first_completed
from bridge.ws_app import CLOSE_GRACE_S, CLOSE_TRY_AGAIN_LATER, accept_feed, close_revoked, closer
from nxg_mqtt.messages import compact
from nxg_mqtt.protocol import DEVICE_TS, STATE_UPDATE, MessageType


def state_update(message: dict[str, Any]) -> dict[str, Any] | None:
    """The `state_update` of an app message, None for what is not a status."""
    if message.get("t") != MessageType.STATUS:
        return None
    state = {k: v for k, v in message.items() if k not in ("t", "serial", "ts", DEVICE_TS)}
    return {"type": STATE_UPDATE, "device_id": message["serial"], "state": state, "timestamp": message["ts"]}


async def _pump(websocket: WebSocket, feed: AppFeed) -> None:
    while True:
        update = state_update(json.loads(await feed.queue.get()))
        if update is not None:
            await websocket.send_text(compact(update))


async def _read(websocket: WebSocket) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "ping":
            await websocket.send_text("pong")
        else:
            error = {"type": "error", "error": "send the text ping; nothing else is expected"}
            await websocket.send_text(json.dumps(error))


async def state_socket(websocket: WebSocket) -> None:
    state = state_of(websocket)
    accepted = await accept_feed(websocket)
    if accepted is None:
        return
    caller, feed, unsubscribe = accepted
    revoked = asyncio.Event()
    forget = state.sockets.add(caller.key_id, closer(revoked))
    try:
        await first_completed(
            "state socket", _read(websocket), _pump(websocket, feed), feed.overflowed.wait(), revoked.wait()
        )
    finally:
        unsubscribe()
        forget()
    if revoked.is_set():
        await close_revoked(websocket)
    elif feed.overflowed.is_set():
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                websocket.close(CLOSE_TRY_AGAIN_LATER, "too slow: message queue overflowed"), CLOSE_GRACE_S
            )
