"""What one `/ws/app` socket sends, in order, written once per turn of the event loop.

Every frame of the socket (the feed's `ack`s and device messages, and the session's own
`cmd_accepted`, `error`, `pong`, …) goes into one list, in the order it was sent; the list goes
out in one `writelines` at the end of the loop turn, straight to uvicorn's transport
(`realtime_writer.DirectSocket`). A pipelined socket answers many commands per turn, and
uvicorn's per-frame `send` (Starlette's wrapper, websockets' encoder, a write each) was about a
tenth of a command's CPU.

One list keeps the order the protocol needs: `cmd_accepted` is queued before the command is
published, so the device's `ack`, which comes back through the feed later, is always behind it.
A socket whose transport is paused (its client reads too slowly) keeps its frames until uvicorn
resumes it, and the pump stops taking from the feed meanwhile, so the feed overflows (1013) as it
did before. A socket that is not open any more drops its frames (its handler is ending).
Behind another ASGI server the frames go through the ordinary ASGI `send`, one at a time.
"""

from __future__ import annotations

import asyncio

from starlette.websockets import WebSocket

from bridge.realtime_writer import DirectSocket, text_frame
from nxg_mqtt.models import Counters


class AppOutput:
    def __init__(self, websocket: WebSocket, counters: Counters) -> None:
        self._ws = websocket
        self._counters = counters  # app_direct_frames / app_direct_writes (observable: few writes)
        self._direct = DirectSocket.of(websocket.scope)
        self._frames: list[bytes] = []
        self._scheduled = False
        self._waiting: asyncio.Task[None] | None = None

    @property
    def direct(self) -> bool:
        return self._direct is not None

    async def send_text(self, text: str) -> None:
        """Send `text` as one text frame, after every frame sent before it."""
        if self._direct is None:
            await self._ws.send_text(text)
            return
        self._frames.append(text_frame(text.encode()))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def wait_writable(self) -> None:
        """Return once the transport takes writes again (at once when it does)."""
        if self._direct is not None and not self._direct.writable and self._direct.open:
            await self._direct.wait_writable()

    def _flush(self) -> None:
        self._scheduled = False
        direct = self._direct
        if direct is None or not self._frames:
            return
        if not direct.open:
            self._frames.clear()
        elif direct.writable:
            frames, self._frames = self._frames, []
            direct.write(frames)
            self._counters.add("app_direct_writes")
            self._counters.add("app_direct_frames", len(frames))
        elif self._waiting is None:
            self._waiting = asyncio.ensure_future(self._flush_when_writable())

    async def _flush_when_writable(self) -> None:
        assert self._direct is not None
        try:
            await self._direct.wait_writable()
        finally:
            self._waiting = None
        self._flush()

    def close(self) -> None:
        """The socket's handler ends: what is queued goes out now (before a close frame the
        handler may send); a flush still waiting for a paused transport is given up."""
        if self._waiting is not None:
            self._waiting.cancel()
            self._waiting = None
        self._flush()
