"""`/ws/app` (seed 000): live device messages down, commands up.

Down (flat): `device_online` / `device_offline`, `telemetry`, `status`, `event`, `ack`, each with
`serial` and `ts` (server receive time, ms; a device's own `ts` is `device_ts`).
Up: `{"t":"cmd","serial","target"?,"action","params"?,"ref"?}` → `{"t":"cmd_accepted","id","ref"}`
then, later, the device's `{"t":"ack","id",...}`; a refused command → `{"t":"error","error",
"code","ref"}`. `{"t":"ping"}` → `{"t":"pong"}`. Bad input gets an `error` and the socket stays open.

The upgrade needs a credential with `read:devices` (the admin password or an API key: `?token=`,
`?api_key=`, `Authorization: Bearer`, `X-API-Key`), else HTTP 401. A key sees only its devices;
commanding needs `write:devices` (`FORBIDDEN`), and a device outside the scope is
`DEVICE_NOT_FOUND`. Revoking or rotating the key closes the socket with 1008.
A socket that cannot keep up (its feed of `ws_queue_limit` messages overflows) is closed with
1013 (try again later); the others never wait for it.

A socket's commands are pipelined: each `cmd` runs as its own task, up to `PIPELINE_MAX` at once
(then the socket is not read until one finishes), so one app keeps the command writer's batches
full instead of waiting out every commit in turn. Commands for one device still go out in the
order they came (each waits for the previous one to that device); answers to different devices
may come in any order, each carrying its `ref`. `cmd_accepted` is sent once the command is
committed and before it is published, so the device's `ack` cannot overtake it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from bridge.access import Caller, caller_of
from bridge.app_output import AppOutput
from bridge.auth import LoginThrottled, throttled_response
from bridge.frames import decode_frame
from bridge.hub import AppFeed
from bridge.state import BridgeState, state_of
from bridge.tasks import first_completed
from nxg_mqtt import messages
from nxg_mqtt.errors import AuthError, DryRunRequired, NxgError
from nxg_mqtt.logs import redact
from nxg_mqtt.models import Command
from nxg_mqtt.protocol import MessageType, Scope

log = logging.getLogger(__name__)

CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_POLICY_VIOLATION = 1008  # the socket's API key was revoked or rotated
CLOSE_GRACE_S = 5.0  # how long a stuck socket gets to take its close frame before we give up
PIPELINE_MAX = 256  # commands of one socket in progress at once


def unauthorized(message: str = "unauthorized: pass ?token=<admin password> or ?api_key=<API key>") -> JSONResponse:
    return JSONResponse({"error": message}, status_code=401)


async def admit(websocket: WebSocket, *, realtime: bool = False) -> Caller | None:
    """The caller of an upgrade, or None after refusing it with a real HTTP 401 (429 for a
    throttled address; the WebSocket Denial Response extension). A credential without
    `read:devices` is refused too; `realtime`: seed 001 wants role user or admin (a viewer is 401)."""
    try:
        caller = await caller_of(websocket, allow_query=True)
        if Scope.READ_DEVICES not in caller.scopes:
            raise AuthError("this credential may not read devices")
        if realtime and caller.role not in ("user", "admin"):
            raise AuthError("unauthorized: /realtime needs an API key with role user or admin")
        return caller
    except LoginThrottled as exc:
        denial, why = throttled_response(exc), exc.message
    except AuthError as exc:
        denial, why = unauthorized(exc.message), exc.message
    peer = f"{websocket.client.host}:{websocket.client.port}" if websocket.client else None
    path = redact(websocket.url.path + (f"?{websocket.url.query}" if websocket.url.query else ""))
    context = {"peer": peer, "path": path, "status": denial.status_code, "reason": why}
    log.info("WebSocket upgrade refused: %d %s", denial.status_code, path, extra=context)
    await websocket.send_denial_response(denial)
    return None


class AppSession:
    def __init__(self, websocket: WebSocket, state: BridgeState, feed: AppFeed, caller: Caller) -> None:
        self.ws = websocket
        self.state = state
        self.caller = caller
        self.feed = feed
        self.out = AppOutput(websocket, state.hub.counters)  # every frame of this socket, in order (app_output)
        self._slots = asyncio.Semaphore(PIPELINE_MAX)
        self._tails: dict[str, asyncio.Task[None]] = {}  # device (lower case) → its latest command's task
        self._tasks: set[asyncio.Task[None]] = set()

    async def send(self, message: dict[str, Any]) -> None:
        await self.out.send_text(messages.compact(message))

    async def pump(self) -> None:
        queue, out = self.feed.queue, self.out
        while True:
            await out.send_text(await queue.get())
            # drain what piled up meanwhile in one turn: no wake-up per message
            while not queue.empty():
                await out.send_text(queue.get_nowait())
            # a client that reads too slowly: stop taking from the feed (it overflows: 1013)
            await out.wait_writable()

    async def read(self) -> None:
        limit = self.state.settings.ws_max_frame_bytes
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                value = decode_frame(message, limit)
            except ValueError as exc:
                await self.send({"t": "error", "error": str(exc), "code": "INVALID"})
                continue
            await self.handle(value)

    async def handle(self, value: dict[str, Any]) -> None:
        t = value["t"]
        ref = value.get("ref")
        if t == "ping":
            await self.send({"t": "pong"})
            return
        if t != MessageType.CMD:
            await self.error(f"unknown message type {t!r} (expected cmd or ping)", "INVALID", ref)
            return
        try:
            # the core's one validation: the CLI and REST give the same mistake the same message
            messages.check_command_request({k: v for k, v in value.items() if k != "t"}, with_serial=True)
            await self.caller.check_device(value["serial"])  # outside the scope: not found, before the role
            self.caller.require(Scope.WRITE_DEVICES)
        except NxgError as exc:
            await self.refused(exc, ref)
            return
        if value.get("dry_run") is True:
            await self.dry_run(value, ref)
            return
        await self.pipeline(value["serial"], self.submit(value, ref))

    async def pipeline(self, serial: str, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` (one command) as a task, after the previous command to the same device."""
        await self._slots.acquire()
        key = serial.lower()
        task = asyncio.create_task(self._after(self._tails.get(key), work))
        self._tails[key] = task
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._slots.release()
            self._tasks.discard(finished)
            if self._tails.get(key) is finished:
                del self._tails[key]
            if not finished.cancelled() and finished.exception() is not None:
                log.debug("an /ws/app command task failed", exc_info=finished.exception())

        task.add_done_callback(done)

    @staticmethod
    async def _after(previous: asyncio.Task[None] | None, work: Coroutine[Any, Any, None]) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        await work

    async def drain(self) -> None:
        """Let the commands in progress finish (each is committed or refused, never cut halfway)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def dry_run(self, value: dict[str, Any], ref: Any) -> None:
        """`"dry_run": true`: validated only, nothing sent → `{"t":"cmd_validated","ref",
        "dry_run_token"}` (a token only for a critical action; REST's confirm sends it)."""
        try:
            checked = await self.state.core.commands.dry_run(
                value["serial"], value["action"], value.get("target"), value.get("params")
            )
        except NxgError as exc:
            await self.refused(exc, ref)
            return
        await self.send({"t": "cmd_validated", "ref": ref, "dry_run_token": checked.token})

    async def submit(self, value: dict[str, Any], ref: Any) -> None:
        async def accepted(command: Command) -> None:
            # committed, not yet published: the device's ack cannot reach the app before this
            with contextlib.suppress(Exception):  # a closed socket must not stop the dispatch
                await self.send({"t": "cmd_accepted", "id": command.id, "ref": ref})

        try:
            core, embedded = self.state.core, self.state.embedded
            command = await core.commands.submit(
                value["serial"],
                value["action"],
                value.get("target"),
                value.get("params"),
                ref=None if ref is None else str(ref),
                source="ws_app",
                dispatch=embedded,
                actor=self.caller.actor,
                before_dispatch=accepted,
            )
            if not embedded and core.presence.is_ready(command.serial):
                # a device on this bridge's own gateway: nobody else can dispatch to it
                core.commands.note_queued(command.serial)
                await core.commands.dispatch_queued(command.serial)
        except NxgError as exc:
            await self.refused(exc, ref)

    async def refused(self, exc: NxgError, ref: Any) -> None:
        """A refused command: `error` with the PROTOCOL §4 code, each schema error in `details`
        (PARAMS_INVALID) and, for a critical action, the `dry_run_token` that confirms it."""
        message: dict[str, Any] = {"t": "error", "error": exc.message, "code": exc.code, "ref": ref}
        if isinstance(exc.details, list):
            message["details"] = exc.details
        if isinstance(exc, DryRunRequired):
            message["dry_run_token"] = exc.token
        await self.send(message)

    async def error(self, text: str, code: str, ref: Any) -> None:
        await self.send({"t": "error", "error": text, "code": code, "ref": ref})


async def accept_feed(websocket: WebSocket) -> tuple[Caller, AppFeed, Callable[[], None]] | None:
    """Admit the upgrade (None when it was refused), accept it and open the caller's feed (its
    devices of its tenant); the callable unsubscribes the feed."""
    caller = await admit(websocket)
    if caller is None:
        return None
    await websocket.accept()
    feed, unsubscribe = state_of(websocket).hub.open_feed(caller.devices, caller.tenant)
    return caller, feed, unsubscribe


async def app_socket(websocket: WebSocket) -> None:
    state = state_of(websocket)
    accepted = await accept_feed(websocket)
    if accepted is None:
        return
    caller, feed, unsubscribe = accepted
    session = AppSession(websocket, state, feed, caller)
    revoked = asyncio.Event()
    forget = state.sockets.add(caller.key_id, closer(revoked))
    try:
        await first_completed("app socket", session.read(), session.pump(), feed.overflowed.wait(), revoked.wait())
    finally:
        unsubscribe()
        forget()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.drain(), CLOSE_GRACE_S)
        session.out.close()
    if revoked.is_set():
        await close_revoked(websocket)
        return
    if feed.overflowed.is_set():
        state.hub.counters.add("slow_app_closed")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                websocket.close(CLOSE_TRY_AGAIN_LATER, "too slow: message queue overflowed"), CLOSE_GRACE_S
            )


def closer(revoked: asyncio.Event) -> Callable[[], Awaitable[None]]:
    """The callback `state.sockets` runs when the socket's key is revoked or rotated."""

    async def close() -> None:
        revoked.set()

    return close


async def close_revoked(websocket: WebSocket) -> None:
    """The key was revoked or rotated: close with 1008 (policy violation)."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(CLOSE_POLICY_VIOLATION, "API key revoked"), CLOSE_GRACE_S)
