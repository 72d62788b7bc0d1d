"""`one_write(app)`: an HTTP response sent in one piece goes to the socket in one write.

uvicorn (httptools) writes a response's status line and headers as soon as the app sends
`http.response.start`, and the body with `http.response.body`: two system calls, two TCP
segments and two wake-ups of the client for every REST answer, most of which are one small JSON
body. Here the start message is held until the body comes; when that body is the whole response
(`more_body` false), both go through uvicorn's own `send` while its connection's transport is
swapped for a collector, and the collected bytes go out in one `write`. uvicorn still checks and
encodes everything itself (headers, Content-Length, keep-alive, the access log); only the write
is joined. A streamed body (`more_body`, e.g. a firmware download) gets the start message at its
first chunk and goes out as before. Behind another server, or another uvicorn protocol, `send`
is passed through untouched.

`logs_itself(path)` names the requests whose access line the app writes itself (`/api/v1`:
`ApiHeaders`): uvicorn is told not to build its own record for them (about 11 µs a request, for
a line the `OneAccessLine` filter would drop anyway; the filter stays for any other server).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from bridge.realtime_writer import ASGIApp, Receive, Scope, Send


class _Collector:
    """Stands in for the transport during one `send` pair: keeps what is written."""

    __slots__ = ("closed", "parts")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def close(self) -> None:  # a response with `Connection: close`: after the write
        self.closed = True

    def is_closing(self) -> bool:
        return False


def one_write(app: ASGIApp, logs_itself: Callable[[str], bool] = lambda path: False) -> ASGIApp:
    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        cycle = getattr(send, "__self__", None)
        if scope["type"] != "http" or not isinstance(cycle, RequestResponseCycle):
            await app(scope, receive, send)
            return
        if logs_itself(scope["path"]):
            cycle.access_log = False
        held: MutableMapping[str, Any] | None = None

        async def joined(message: MutableMapping[str, Any]) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and held is None:
                held = message
                return
            start, held = held, None
            if start is None:
                await send(message)
                return
            if message["type"] != "http.response.body" or message.get("more_body", False):
                await send(start)
                await send(message)
                return
            transport, collector = cycle.transport, _Collector()
            cycle.transport = collector  # type: ignore[assignment]
            try:
                await send(start)
                await send(message)
            finally:
                cycle.transport = transport
            if collector.parts and not transport.is_closing():
                transport.write(b"".join(collector.parts))
            if collector.closed:
                transport.close()

        await app(scope, receive, joined)
        if held is not None:  # a start without a body (the app ended early): as uvicorn would get it
            await send(held)

    return asgi
