"""The bridge's listening socket has TCP_NODELAY, which accepted connections inherit: without it
every request after the first on a kept-alive connection waited ~40 ms for a delayed ACK."""

from __future__ import annotations

import socket

from bridge.server import bind


def test_the_listening_socket_disables_nagle() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        sock.listen()
        client = socket.create_connection(sock.getsockname())
        accepted, _ = sock.accept()
        try:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # inherited
        finally:
            accepted.close()
            client.close()
    finally:
        sock.close()
