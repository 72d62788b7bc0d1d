"""`/realtime` (seed 001): live updates of the devices a client subscribes to, by hardware id.

    → {"type":"connected","connectionId":"conn-<ms>-<n>"}                    on connect
    ← {"type":"subscribe","hardwareIds":[...]}   → {"type":"subscribed","hardwareIds":[...]}
    ← {"type":"unsubscribe","hardwareIds":[...]} → {"type":"unsubscribed","hardwareIds":[...]}
    → device_data / device_status / device_unlocked / device_locked (`protocol.realtime_message`)
    → {"type":"error","message":"..."}  non-array hardwareIds, unknown type, invalid JSON, and
                                          ids outside the key's scope (not subscribed; the rest are)

The upgrade needs an API key with role user or admin (or the admin password) holding
`read:devices`, as `?api_key=`, `?token=`, `X-API-Key` or `Authorization: Bearer`; anything else
gets HTTP 401 and no socket (a viewer key too, as seed 001 says). An id outside the key's device
scope gets the same error as an id that does not exist, so existence never leaks; an id in scope
is subscribed whether or not the device exists yet. A socket that cannot keep up is closed with
1013; revoking or rotating its key closes it with 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket

from bridge.access import Caller
from bridge.realtime_writer import DirectSocket, RealtimeWriter, frame_text
from bridge.state import BridgeState, state_of
from bridge.tasks import first_completed
from bridge.ws_app import CLOSE_GRACE_S, CLOSE_TRY_AGAIN_LATER, admit, close_revoked
from nxg_mqtt.errors import PayloadRejected
from nxg_mqtt.messages import compact, load_json
from nxg_mqtt.models import now_ms

MAX_IDS = 1000  # per socket: a bound on what one client can make the hub index
_numbers = itertools.count(1)


class RealtimeSession:
    def __init__(
        self,
        websocket: WebSocket,
        state: BridgeState,
        caller: Caller,
        writer: RealtimeWriter,
        direct: DirectSocket | None,
    ) -> None:
        self.ws = websocket
        self.state = state
        self.caller = caller
        self.writer = writer
        self.direct = direct  # None: not behind uvicorn's websockets-sansio, frames go through ASGI
        self.limit = max(1, state.settings.ws_queue_limit)
        self.pending: deque[bytes] = deque()  # WebSocket frames (`realtime_writer.text_frame`)
        self.overflowed = asyncio.Event()
        self.ended = False
        self.marked = False  # in the writer's list for its next pass
        self.busy = False  # a task of its own is sending or waiting for the transport
        self.subscriptions: dict[str, Callable[[], None]] = {}

    def offer(self, frame: bytes) -> None:
        """The hub's callback: queue one message's frame and let the writer know (never waits)."""
        if self.ended or self.overflowed.is_set():
            return
        pending = self.pending
        if len(pending) >= self.limit:
            self.overflowed.set()
            return
        pending.append(frame)
        if not self.marked:
            self.marked = True
            self.writer.mark(self)

    async def wait_writable(self) -> None:
        """The transport is paused: resume writing when uvicorn says it drained (`busy` meanwhile)."""
        assert self.direct is not None
        try:
            await self.direct.wait_writable()
        finally:
            self.busy = False
        if self.pending and not self.ended and not self.marked:
            self.marked = True
            self.writer.mark(self)

    async def drain_asgi(self) -> None:
        """Send the queued frames through the ASGI `send`, one at a time (`busy` meanwhile)."""
        try:
            while self.pending and not self.ended:
                await self.ws.send_text(frame_text(self.pending.popleft()))
                self.writer.asgi_frames += 1
        except Exception:
            self.ended = True  # the socket went away; its handler cleans up
        finally:
            self.busy = False

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_text(compact(message))

    async def error(self, text: str) -> None:
        await self.send({"type": "error", "message": text})

    async def read(self) -> None:
        limit = self.state.settings.ws_max_frame_bytes
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None or len(text.encode("utf-8", "surrogatepass")) > limit:
                await self.error(f"invalid message: send a JSON text frame of at most {limit} bytes")
                continue
            try:
                value = load_json(text, what="message")
            except PayloadRejected:
                await self.error("invalid JSON")
                continue
            await self.handle(value)

    async def handle(self, value: Any) -> None:
        kind = value.get("type") if isinstance(value, dict) else None
        if kind not in ("subscribe", "unsubscribe"):
            await self.error(f"unknown message type: {kind!r} (expected subscribe or unsubscribe)")
            return
        ids = value.get("hardwareIds")
        if not isinstance(ids, list):
            await self.error("hardwareIds must be an array")
            return
        if not all(isinstance(i, str) for i in ids):
            await self.error("hardwareIds must be an array of strings")
            return
        wanted = list(dict.fromkeys(ids))
        if kind == "unsubscribe":
            for serial in wanted:
                forget = self.subscriptions.pop(serial, None)
                if forget is not None:
                    forget()
            await self.send({"type": "unsubscribed", "hardwareIds": wanted})
            return
        # an id in scope is subscribed even before it exists (seed 001); another tenant's device
        # is as absent as that one: subscribed, and the hub delivers nothing of it (`tenant=`)
        allowed = [s for s in wanted if self.caller.sees(s)]
        refused = [s for s in wanted if not self.caller.sees(s)]
        new = [s for s in allowed if s not in self.subscriptions]
        if len(self.subscriptions) + len(new) > MAX_IDS:
            await self.error(f"at most {MAX_IDS} hardwareIds per connection")
            return
        for serial in new:
            self.subscriptions[serial] = self.state.hub.subscribe_realtime(
                [serial], self.offer, tenant=self.caller.tenant
            )
        if allowed or not refused:
            await self.send({"type": "subscribed", "hardwareIds": allowed})
        if refused:
            await self.error(f"device not found: {', '.join(refused)}")

    def close(self) -> None:
        self.ended = True
        for forget in self.subscriptions.values():
            forget()
        self.subscriptions.clear()


async def realtime_socket(websocket: WebSocket) -> None:
    state = state_of(websocket)
    caller = await admit(websocket, realtime=True)
    if caller is None:
        return
    await websocket.accept()
    session = RealtimeSession(websocket, state, caller, state.realtime, DirectSocket.of(websocket.scope))
    revoked = asyncio.Event()

    async def close() -> None:
        revoked.set()

    forget = state.sockets.add(caller.key_id, close)
    try:
        await session.send({"type": "connected", "connectionId": f"conn-{now_ms()}-{next(_numbers)}"})
        await first_completed("realtime socket", session.read(), session.overflowed.wait(), revoked.wait())
    finally:
        session.close()
        forget()
    if revoked.is_set():
        await close_revoked(websocket)
    elif session.overflowed.is_set():
        state.hub.counters.add("slow_realtime_closed")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                websocket.close(CLOSE_TRY_AGAIN_LATER, "too slow: message queue overflowed"), CLOSE_GRACE_S
            )
