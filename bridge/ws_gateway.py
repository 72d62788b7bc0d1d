"""`/ws/gateway`: devices speaking seed 000's JSON protocol over one WebSocket (PROTOCOL §3).

    → {"t":"pair","code"}      ← {"t":"pair_ok","serial","token"} (also authenticates) | pair_error
    → {"t":"auth","token"}     ← {"t":"auth_ok","serial"} | {"t":"auth_reset_required"}
    → {"t":"telemetry"|"status"|"event",...}, {"t":"ack","id","ok"}, {"t":"pong"}
    ← {"t":"cmd","id","target","action","params"}, {"t":"ping"}, {"t":"error","error"}

Everything a device sends is republished through the MQTT link on `nxg/{S}/...` at QoS 1, so a
WebSocket device looks exactly like an MQTT one to apps and integrators (the broker's ingest and
ack plugins store it). Commands come back from `nxg/{S}/cmd` through the hub.

The upgrade is open to everyone: devices authenticate in-band. Close codes: 1008 three protocol
errors in a row before auth; 4000 taken over by a newer socket of the same serial; 4001 revoked
(reset/regenerate/delete, after `auth_reset_required`); 4002 no pong within `ws_pong_timeout_s`;
4003 no pair/auth within `connect_timeout_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from bridge.frames import decode_frame
from bridge.link import LinkDown
from bridge.state import BridgeState, state_of
from bridge.tasks import first_completed
from nxg_mqtt import messages
from nxg_mqtt.errors import NxgError, PayloadRejected, ValidationError
from nxg_mqtt.messages import compact
from nxg_mqtt.protocol import DEVICE_DATA, SERVER_TS, CloseReason, MessageType, RevokeReason, Schema
from nxg_mqtt.services.manifests import check_manifest
from nxg_mqtt.topics import Channel, device_topic

log = logging.getLogger(__name__)

CLOSE_PROTOCOL, CLOSE_TAKEN_OVER, CLOSE_REVOKED, CLOSE_KEEPALIVE, CLOSE_AUTH_TIMEOUT = 1008, 4000, 4001, 4002, 4003
PUBLISH_WINDOW = 64  # a socket's messages on their way to the broker, not yet acknowledged
PUBLISH_DRAIN_S = 2.0
MAX_STRIKES = 3


class GatewaySession:
    def __init__(self, websocket: WebSocket, state: BridgeState) -> None:
        self.ws = websocket
        self.state = state
        self.settings = state.settings
        self.core = state.core
        self.remote = websocket.client.host if websocket.client else "unknown"
        self.serial: str | None = None
        self.strikes = 0
        loop = asyncio.get_running_loop()
        self.opened = self.last_pong = loop.time()
        self.outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=max(1, self.settings.ws_queue_limit))
        self.done = asyncio.Event()
        self.close_code = 1000
        self.reason: str = CloseReason.DISCONNECTED
        self.revoked_why: RevokeReason | None = None
        self._detach: list[Any] = []
        self._inflight: deque[asyncio.Task[None]] = deque()

    # ---- outcome ----------------------------------------------------------------------------------

    def finish(self, code: int, reason: str) -> None:
        if not self.done.is_set():
            self.close_code, self.reason = code, reason
            self.done.set()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_text(compact(message))

    async def revoked(self, why: RevokeReason) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.send({"t": "auth_reset_required"}), 0.5)
        self.revoked_why = why
        self.finish(CLOSE_REVOKED, CloseReason.KICKED)

    def taken_over(self) -> None:
        self.finish(CLOSE_TAKEN_OVER, CloseReason.TAKEN_OVER)

    # ---- tasks ------------------------------------------------------------------------------------

    async def read(self) -> None:
        limit = self.settings.ws_max_frame_bytes
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                self.finish(1000, CloseReason.DISCONNECTED)
                return
            try:
                value = decode_frame(message, limit)
            except ValueError as exc:
                await self.protocol_error(str(exc))
                continue
            await self.handle(value)

    async def keepalive(self) -> None:
        loop = asyncio.get_running_loop()
        interval, timeout = self.settings.ws_ping_interval_s, self.settings.ws_pong_timeout_s
        tick = max(0.02, min(interval, timeout, 1.0) / 4)
        next_ping = loop.time() + interval
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            if self.serial is None and now - self.opened > self.settings.connect_timeout_s:
                self.finish(CLOSE_AUTH_TIMEOUT, "no pair or auth in time")
                return
            if now - self.last_pong > timeout:
                self.finish(CLOSE_KEEPALIVE, CloseReason.KEEPALIVE_TIMEOUT)
                return
            if now >= next_ping:
                next_ping = now + interval
                await self.send({"t": "ping"})

    async def pump(self) -> None:
        while True:
            await self.ws.send_text(await self.outbox.get())

    def on_command(self, payload: bytes) -> None:
        try:
            self.outbox.put_nowait(payload.decode())
        except asyncio.QueueFull:
            log.warning("gateway outbox of %s is full; a command waits for its timeout", self.serial)

    # ---- messages ---------------------------------------------------------------------------------

    async def protocol_error(self, text: str) -> None:
        await self.send({"t": "error", "error": text})
        if self.serial is None:
            self.strikes += 1
            if self.strikes >= MAX_STRIKES:
                self.finish(CLOSE_PROTOCOL, "too many protocol errors before auth")

    async def handle(self, value: dict[str, Any]) -> None:
        t = value["t"]
        if t == "pong":
            self.last_pong = asyncio.get_running_loop().time()
            return
        if t == "ping":
            await self.send({"t": "pong"})
            return
        if t in ("pair", "auth"):
            if self.serial is not None:
                await self.protocol_error(f"already authenticated as {self.serial}")
                return
            await (self.pair(value) if t == "pair" else self.auth(value))
            return
        if t not in DEVICE_DATA and t not in (MessageType.ACK, Channel.MANIFEST):
            await self.protocol_error(f"unknown message type {t!r}")
            return
        if self.serial is None:
            await self.protocol_error(f"not authenticated: send pair or auth before {t}")
            return
        if t == MessageType.ACK:
            await self.ack(self.serial, value)
        elif t == Channel.MANIFEST:
            await self.manifest(self.serial, value)
        else:
            await self.data(self.serial, MessageType(t), value)

    async def pair(self, value: dict[str, Any]) -> None:
        code = value.get("code")
        if not isinstance(code, str) or not code:
            await self.protocol_error('pair needs "code" (the connection code, XXXX-XXXX)')
            return
        self.strikes = 0
        try:
            paired = await self.core.devices.pair(code, source=self.remote)
        except NxgError as exc:
            await self.send({"t": "pair_error", "error": exc.message})
            return
        await self.send({"t": "pair_ok", "serial": paired.serial, "token": paired.token})
        await self.authenticated(paired.serial)

    async def auth(self, value: dict[str, Any]) -> None:
        token = value.get("token")
        if not isinstance(token, str) or not token:
            await self.protocol_error('auth needs "token" (from pair_ok)')
            return
        self.strikes = 0
        serial = await self.core.devices.authenticate_token(token)
        if serial is None:
            await self.send({"t": "auth_reset_required"})
            return
        await self.send({"t": "auth_ok", "serial": serial})
        await self.authenticated(serial)

    async def authenticated(self, serial: str) -> None:
        self.serial = serial
        self.last_pong = asyncio.get_running_loop().time()
        previous = self.state.gateway.claim(self, serial)
        presence = self.core.presence
        if previous is not None:
            previous.taken_over()
            await presence.disconnected(serial, CloseReason.TAKEN_OVER, "ws")
        await presence.connected(serial, "ws", self.remote)
        self._detach.append(self.state.hub.attach_device(serial, self.on_command))
        await presence.subscribed_commands(serial)

    async def data(self, serial: str, t: MessageType, value: dict[str, Any]) -> None:
        payload = _passed_on(value, "t")
        raw = compact(payload).encode()
        limit = self.settings.max_payload_bytes

        def check() -> None:
            if len(raw) > limit:
                raise messages.reject(
                    messages.Reason.TOO_LARGE, f"payload of {len(raw)} bytes exceeds the limit of {limit} bytes"
                )
            messages.validate(t, payload)

        if await self.validated(serial, t, check):
            await self.publish(device_topic(serial, Channel(t.value)), raw)

    async def ack(self, serial: str, value: dict[str, Any]) -> None:
        if await self.validated(serial, Channel.ACK, lambda: messages.validate(Schema.ACK, value)):
            raw = compact(_passed_on(value)).encode()
            await self.publish(device_topic(serial, Channel.ACK), raw)

    async def manifest(self, serial: str, value: dict[str, Any]) -> None:
        """`{"t":"manifest","capabilities":[…]}`: checked here so the device hears what is wrong,
        then published on `nxg/{S}/manifest`, where the broker stores it like an MQTT device's."""
        payload = {k: v for k, v in value.items() if k != "t"}
        raw = compact(payload).encode()
        limit = self.settings.max_manifest_bytes

        def check() -> None:
            if len(raw) > limit:
                raise messages.reject(
                    messages.Reason.TOO_LARGE, f"manifest of {len(raw)} bytes exceeds the limit of {limit} bytes"
                )
            try:
                check_manifest(payload)
            except ValidationError as exc:
                raise messages.reject(messages.Reason.SCHEMA, exc.message) from None

        if await self.validated(serial, Channel.MANIFEST, check):
            await self.publish(device_topic(serial, Channel.MANIFEST), raw)

    async def validated(self, serial: str, leaf: str, check: Callable[[], None]) -> bool:
        """True if `check()` passes; else the rejection is recorded and the device told why."""
        try:
            self.core.ingest.validated(serial, leaf, check)
        except PayloadRejected as exc:
            await self.send({"t": "error", "error": exc.message})
            return False
        return True

    async def publish(self, topic: str, raw: bytes) -> None:
        """Hand a message to the link without waiting for its PUBACK, up to PUBLISH_WINDOW at once.

        The broker acknowledges a QoS 1 message only once it is committed (group commit, one batch
        window), so waiting for each in turn would cap a socket at one message per window. The
        link writes each PUBLISH when its task first runs, and tasks run in creation order, so the
        order the device sent is the order the broker sees."""
        inflight = self._inflight
        while inflight and inflight[0].done():
            inflight.popleft()
        if len(inflight) >= PUBLISH_WINDOW:
            await asyncio.wait([inflight.popleft()])
        inflight.append(asyncio.get_running_loop().create_task(self._publish(topic, raw)))

    async def _publish(self, topic: str, raw: bytes) -> None:
        try:
            await self.state.link.publish(topic, raw, qos=1)
        except LinkDown as exc:
            with contextlib.suppress(Exception):
                await self.send({"t": "error", "error": f"not delivered: {exc.message}"})

    # ---- the end ----------------------------------------------------------------------------------

    async def close(self) -> None:
        for detach in self._detach:
            detach()
        if self._inflight:
            # what the device sent before it left still reaches the broker (bounded wait)
            await asyncio.wait(self._inflight, timeout=PUBLISH_DRAIN_S)
        if self.state.gateway.release(self) and self.serial is not None:
            try:
                await self.core.presence.disconnected(self.serial, self.reason, "ws")
                if self.revoked_why is RevokeReason.DELETE:
                    await self.core.presence.forget(self.serial)
            except Exception:
                log.exception("presence update for %s failed", self.serial)
        if self.ws.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(self.close_code, self.reason), 1.0)


async def gateway_socket(websocket: WebSocket) -> None:
    state = state_of(websocket)
    await websocket.accept()
    session = GatewaySession(websocket, state)
    try:
        await first_completed(
            f"gateway session {session.remote}",
            session.read(),
            session.keepalive(),
            session.pump(),
            session.done.wait(),
        )
    finally:
        await session.close()


def _passed_on(value: dict[str, Any], *dropped: str) -> dict[str, Any]:
    """A device's data or ack as the core publishes it on the device's behalf: without `dropped`
    and without a `server_ts` of the device's own. The broker's stamp is the one ts, and the
    Mosquitto plugin keeps a stamp the core published (`stamped_by_core` in mosquitto/nxg_plugin.c),
    so a device's would be taken for the receive time."""
    return {k: v for k, v in value.items() if k != SERVER_TS and k not in dropped}
