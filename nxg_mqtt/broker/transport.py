"""The byte pipes a connection runs over: TCP streams and MQTT-over-WebSocket.

Writes are synchronous so fan-out never awaits per subscriber; `buffered()` tells the router
how far a subscriber is behind and `drain()` lets a publisher wait for it (backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from nxg_mqtt.mqtt.codec import ProtocolError

HIGH_WATER = 256 * 1024  # bytes buffered for a subscriber before its publishers wait
LOW_WATER = 64 * 1024
READ_SIZE = 16 * 1024  # bounded work per turn: one busy publisher cannot hold the loop
_WS_FRAME = 64 * 1024


class Transport(Protocol):
    remote_address: str | None
    remote_port: int | None
    peer_cert: bytes | None  # the client certificate (DER) a TLS listener verified, if any

    async def read(self) -> bytes:
        """Next chunk of bytes; b"" once the peer is gone."""
        ...

    def write(self, data: bytes) -> None: ...

    def buffered(self) -> int: ...

    async def drain(self) -> None:
        """Wait until the write buffer is below the low-water mark."""
        ...

    def abort(self) -> None:
        """Close now, discarding unsent bytes; a pending `read()` returns b""."""
        ...

    async def close(self) -> None:
        """Flush (briefly) and close."""
        ...


def _peer(peer: object) -> tuple[str | None, int | None]:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(peer[0]), int(peer[1])
    return None, None


class TcpTransport:
    """Writes are corked until the end of the event-loop pass: a chunk of PUBLISHes handled in one
    pass leaves as one send() per socket (its PUBACKs to the publisher, the copies to each
    subscriber) instead of one system call per packet."""

    __slots__ = (
        "_loop",
        "_pending",
        "_pending_size",
        "_reader",
        "_transport",
        "_writer",
        "peer_cert",
        "remote_address",
        "remote_port",
    )

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._transport = writer.transport
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] | None = None
        self._pending_size = 0
        self._transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        self.remote_address, self.remote_port = _peer(writer.get_extra_info("peername"))
        tls = writer.get_extra_info("ssl_object")
        self.peer_cert: bytes | None = tls.getpeercert(binary_form=True) if tls is not None else None

    async def read(self) -> bytes:
        try:
            return await self._reader.read(READ_SIZE)
        except OSError:
            return b""

    def write(self, data: bytes) -> None:
        pending = self._pending
        if pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            pending.append(data)
        self._pending_size += len(data)

    def _flush(self) -> None:
        pending = self._pending
        self._pending = None
        self._pending_size = 0
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def buffered(self) -> int:
        return self._pending_size + self._transport.get_write_buffer_size()

    async def drain(self) -> None:
        self._flush()
        await self._writer.drain()

    def abort(self) -> None:
        self._pending = None
        self._pending_size = 0
        self._transport.abort()

    async def close(self) -> None:
        self._flush()
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)
        except (TimeoutError, OSError):
            self._transport.abort()


class WebSocketTransport:
    """Binary frames in, binary frames out; one sender task per connection batches writes."""

    __slots__ = (
        "_closed",
        "_drained",
        "_emptied",
        "_pending",
        "_sender",
        "_size",
        "_wake",
        "_ws",
        "peer_cert",
        "remote_address",
        "remote_port",
    )

    def __init__(self, ws: ServerConnection) -> None:
        self._ws = ws
        self._pending: deque[bytes] = deque()
        self._size = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._emptied = asyncio.Event()
        self._emptied.set()
        self._closed = False
        self.remote_address, self.remote_port = _peer(ws.remote_address)
        self.peer_cert: bytes | None = None  # device certificates are for the MQTT/TLS listener
        self._sender = asyncio.get_running_loop().create_task(self._send_loop())

    async def read(self) -> bytes:
        try:
            data = await self._ws.recv()
        except ConnectionClosed:
            return b""
        if isinstance(data, str):
            raise ProtocolError("MQTT over WebSocket needs binary frames")
        return data

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        self._pending.append(data)
        self._size += len(data)
        if self._size > HIGH_WATER:
            self._drained.clear()
        self._emptied.clear()
        self._wake.set()

    def buffered(self) -> int:
        return self._size

    async def drain(self) -> None:
        await self._drained.wait()
        if self._closed:
            raise ConnectionResetError("websocket closed")

    async def _send_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._pending:
                    batch: list[bytes] = []
                    size = 0
                    while self._pending and size < _WS_FRAME:
                        chunk = self._pending.popleft()
                        batch.append(chunk)
                        size += len(chunk)
                    await self._ws.send(b"".join(batch))
                    self._size -= size
                    if self._size <= LOW_WATER:
                        self._drained.set()
                self._emptied.set()
        except ConnectionClosed:
            pass
        finally:
            self._closed = True
            self._pending.clear()
            self._size = 0
            self._drained.set()
            self._emptied.set()

    def abort(self) -> None:
        self._closed = True
        self._sender.cancel()
        self._ws.transport.abort()

    async def close(self) -> None:
        if not self._closed and self._pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), 1.0)
        self._closed = True
        self._sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sender
        try:
            await asyncio.wait_for(self._ws.close(), 1.0)
        except (TimeoutError, ConnectionClosed):
            self._ws.transport.abort()
