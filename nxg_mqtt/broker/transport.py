"""The byte pipes a connection runs over: TCP streams and MQTT-over-WebSocket.

Writes are synchronous so fan-out never awaits per subscriber; `buffered()` tells the router
how far a subscriber is behind and `drain()` lets a publisher wait for it (backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Protocol, cast

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


class TcpTransport(asyncio.Protocol):
    """The TCP (and TLS) listener's protocol itself: no StreamReader, StreamWriter or reader
    protocol in between. `data_received` appends to a buffer and wakes the one waiting `read()`;
    reading pauses while a client is `READ_SIZE * 4` ahead of the broker.

    Writes are corked until the end of the event-loop pass: a chunk of PUBLISHes handled in one
    pass leaves as one send() per socket (its PUBACKs to the publisher, the copies to each
    subscriber) instead of one system call per packet."""

    __slots__ = (
        "_buffer",
        "_closed",
        "_drain_waiter",
        "_eof",
        "_loop",
        "_on_open",
        "_pending",
        "_pending_size",
        "_read_paused",
        "_read_waiter",
        "_transport",
        "_write_paused",
        "peer_cert",
        "remote_address",
        "remote_port",
    )

    def __init__(self, on_open: Callable[[TcpTransport], object]) -> None:
        self._on_open = on_open  # starts the connection once the socket (and TLS) is up
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._read_waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self._eof = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._pending: list[bytes] | None = None
        self._pending_size = 0
        self.remote_address: str | None = None
        self.remote_port: int | None = None
        self.peer_cert: bytes | None = None  # the verified TLS client certificate (DER), if any

    # ---- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have asyncio.Transport's methods without subclassing it
        self._transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        self.remote_address, self.remote_port = _peer(transport.get_extra_info("peername"))
        # on a TLS listener this runs once the handshake is done: the client's certificate is known
        tls = transport.get_extra_info("ssl_object")
        self.peer_cert = tls.getpeercert(binary_form=True) if tls is not None else None
        self._on_open(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._read_paused and len(self._buffer) > 4 * READ_SIZE and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake_reader()
        if not self._closed.done():
            self._closed.set_result(None)
        self.resume_writing()  # a waiting drain() wakes up and finds the connection gone

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ---- Transport

    async def read(self) -> bytes:
        buffer = self._buffer
        while not buffer:
            if self._eof:
                return b""
            waiter = self._read_waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._read_waiter = None
        if len(buffer) <= READ_SIZE:
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:READ_SIZE])
            del buffer[:READ_SIZE]
        if self._read_paused and len(buffer) <= READ_SIZE and self._transport is not None:
            self._read_paused = False
            self._transport.resume_reading()
        return data

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
        transport = self._transport
        if pending and transport is not None and not transport.is_closing():
            transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def buffered(self) -> int:
        transport = self._transport
        return self._pending_size + (transport.get_write_buffer_size() if transport is not None else 0)

    async def drain(self) -> None:
        self._flush()
        if not self._closed.done() and self._write_paused:
            waiter = self._drain_waiter
            if waiter is None or waiter.done():
                waiter = self._drain_waiter = self._loop.create_future()
            await asyncio.shield(waiter)  # several publishers may wait for one subscriber
        if self._closed.done():
            raise ConnectionResetError("connection lost")

    def abort(self) -> None:
        self._pending = None
        self._pending_size = 0
        if self._transport is not None:
            self._transport.abort()

    async def close(self) -> None:
        self._flush()
        transport = self._transport
        if transport is None:
            return
        transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), 1.0)
        except TimeoutError:
            transport.abort()


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
