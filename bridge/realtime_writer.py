"""Writing `/realtime` messages to every socket: frames encoded once, written straight to uvicorn.

Seed 001 sends one JSON message per WebSocket text frame, and a server's frame is not masked, so
the frame of a message is the same bytes for every subscriber: the hub encodes it once
(`text_frame`) and each subscribed session queues that one `bytes` object.

`RealtimeWriter` empties the queues once per turn of the event loop (`call_soon`): every message
the MQTT link handed over in one read is written in the same pass, one `writelines` per socket
(one system call however many frames it got). Behind uvicorn's websockets-sansio protocol the
frames go straight to the connection's transport (`DirectSocket`), skipping Starlette's wrapper,
uvicorn's `send` and the per-frame encoding of websockets: those cost about 20 µs per frame,
the direct write about 1 µs plus the system call. Any other ASGI server gets the frames through
the ordinary ASGI `send`, a task per socket.

A socket whose transport is paused (the client reads too slowly) is left alone until uvicorn
resumes it; meanwhile its queue fills, and when it overflows the socket is closed with 1013
(`ws_realtime`). Nothing waits on one client, so a slow socket never delays the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

if TYPE_CHECKING:
    from bridge.ws_realtime import RealtimeSession

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SEND_KEY = "nxg.server_send"  # the scope key under which `expose_send` leaves the server's own `send`


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (RFC 6455 §5.2) carrying `payload` (UTF-8)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def frame_text(frame: bytes) -> str:
    """The text a `text_frame` carries (for the ASGI path)."""
    length = frame[1] & 0x7F
    return frame[2 if length < 126 else 4 if length == 126 else 10 :].decode()


def expose_send(app: ASGIApp) -> ASGIApp:
    """`app` with the server's own ASGI `send` of each WebSocket left in its scope (`SEND_KEY`):
    Starlette hands the endpoint a wrapper of it, which hides uvicorn's protocol object."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope[SEND_KEY] = send
        await app(scope, receive, send)

    return asgi


class DirectSocket:
    """Frames written straight to the transport of uvicorn's websockets-sansio connection.

    Valid because a frame is written whole in one call (uvicorn's own pings and close frames are
    too, so they never interleave with ours), no extension is negotiated (the bridge turns
    permessage-deflate off), and nothing is written once the connection is not OPEN any more.
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    @classmethod
    def of(cls, scope: Scope) -> DirectSocket | None:
        protocol = getattr(scope.get(SEND_KEY), "__self__", None)
        if isinstance(protocol, WebSocketsSansIOProtocol) and not protocol.conn.extensions:
            return cls(protocol)
        return None

    @property
    def open(self) -> bool:
        protocol = self._protocol
        return protocol.conn.state is State.OPEN and not protocol.close_sent and not protocol.disconnected

    @property
    def writable(self) -> bool:
        return self._protocol.writable.is_set()

    async def wait_writable(self) -> None:
        await self._protocol.writable.wait()

    def write(self, frames: list[bytes]) -> None:
        self._protocol.transport.writelines(frames)


class RealtimeWriter:
    """Writes what the hub queued for the `/realtime` sockets, once per turn of the loop."""

    def __init__(self) -> None:
        self._dirty: list[RealtimeSession] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.direct_frames = 0  # written straight to uvicorn's transport
        self.asgi_frames = 0  # sent through the ASGI `send` (another server)

    def mark(self, session: RealtimeSession) -> None:
        """`session` has frames queued (the session marks itself once until it is written)."""
        self._dirty.append(session)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for session in dirty:
            session.marked = False
            if session.ended or session.busy or not session.pending:
                continue
            direct = session.direct
            if direct is None:
                session.busy = True  # until the task is done (it clears this)
                self._spawn(session.drain_asgi())
            elif not direct.open:
                session.ended = True  # closing: its handler cleans up
                session.pending.clear()
            elif direct.writable:
                frames = list(session.pending)
                session.pending.clear()
                direct.write(frames)
                self.direct_frames += len(frames)
            else:
                session.busy = True
                self._spawn(session.wait_writable())

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
