"""One write per HTTP response sent in one piece (bridge/one_write.py), seen from the client's
socket: Linux counts the data segments a TCP socket received (`tcpi_data_segs_in`), and a
response written once arrives as one segment on loopback. Keep-alive, HEAD and
`Connection: close` behave as before."""

from __future__ import annotations

import asyncio
import socket
import struct

from tests.bridge.helpers import Stack
from tests.factories import PASSWORD

_DATA_SEGS_IN = 152  # offset of tcpi_data_segs_in in struct tcp_info (linux/tcp.h)


def data_segments_in(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 160)
    return int(struct.unpack_from("I", info, _DATA_SEGS_IN)[0])


def request(method: str, path: str, extra: str = "") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {PASSWORD}\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> tuple[int, bytes]:
    header = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status = int(header.split(b" ", 2)[1])
    length = next(
        int(line.split(b":")[1]) for line in header.lower().split(b"\r\n") if line.startswith(b"content-length")
    )
    return status, b"" if head else await asyncio.wait_for(reader.readexactly(length), 5)


async def test_a_response_arrives_as_one_segment_and_keep_alive_holds(stack: Stack) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.bridge.http_port)
    sock = writer.get_extra_info("socket")
    try:
        before = data_segments_in(sock)
        for path in ["/health", "/api/v1/devices", "/api/v1/devices/nope"] * 10:
            writer.write(request("GET", path))
            status, body = await read_response(reader)
            assert status in (200, 404) and body.startswith(b"{")
        assert data_segments_in(sock) - before == 30  # headers and body together, every time
        writer.write(request("HEAD", "/health"))
        assert (await read_response(reader, head=True))[0] in (200, 405)
        writer.write(request("GET", "/health", "Connection: close\r\n"))
        assert (await read_response(reader))[0] == 200
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed after the one write
    finally:
        writer.close()
