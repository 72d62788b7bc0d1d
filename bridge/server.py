"""`open_bridge(...)`: the bridge served by uvicorn inside the caller's event loop.

    async with open_bridge(settings, core, "127.0.0.1", broker.mqtt_port) as bridge:
        print(bridge.http_port)   # the bound port (settings.http_port may be 0)

The socket is bound here, before the app is built, so config.h can name the real HTTP port.
Process signals belong to the CLI: uvicorn's own handlers are not installed.

`embedded=False` (the bridge beside a broker run by another core, usually another process): the
bridge watches the data directory's `signals` itself (`BRIDGE_KINDS`), so a key revoked or rotated
by the CLI or through the broker's process closes this bridge's WebSockets within 1 s, as
`nxg-mqtt serve` does; the broker's process keeps kicking the MQTT sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import cast

import uvicorn
from starlette.applications import Starlette

from bridge.app import create_app
from bridge.one_write import one_write
from bridge.realtime_writer import expose_send
from bridge.state import BridgeState, Ports
from bridge.v1.fast_path import CommandFastPath
from bridge.v1.headers import OneAccessLine, under_api
from nxg_mqtt.core import Core
from nxg_mqtt.protocol import SignalKind
from nxg_mqtt.services.signals import BRIDGE_KINDS, SignalWatcher
from nxg_mqtt.settings import Settings

SHUTDOWN_GRACE_S = 2.0


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True, slots=True)
class BridgeServer:
    http_port: int
    app: Starlette
    config: uvicorn.Config
    fast_path: CommandFastPath

    @property
    def state(self) -> BridgeState:
        return cast(BridgeState, self.app.state.bridge)

    @property
    def scheme(self) -> str:
        return "https" if self.config.ssl is not None else "http"

    def reload_tls(self) -> None:
        """New HTTPS/wss:// handshakes use the certificate on disk now; open sockets stay."""
        settings = self.state.settings
        if self.config.ssl is not None and settings.tls_cert is not None:
            self.config.ssl.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # inherited by every accepted connection (Linux): without it a response written in two pieces
    # on a kept-alive connection waits for the client's delayed ACK, 40 ms per request
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


@contextlib.asynccontextmanager
async def open_bridge(
    settings: Settings,
    core: Core,
    mqtt_host: str,
    mqtt_port: int,
    *,
    embedded: bool = True,
    mqtt_ws_port: int | None = None,
) -> AsyncIterator[BridgeServer]:
    sock = bind(settings.host, settings.http_port)
    http_port = int(sock.getsockname()[1])
    ws_port = mqtt_ws_port if mqtt_ws_port is not None else settings.ws_port
    app = create_app(
        settings, core, mqtt_host, mqtt_port, embedded=embedded, ports=Ports(mqtt_port, ws_port, http_port)
    )
    max_size = max(4 * settings.ws_max_frame_bytes, 1024 * 1024)
    fast_path = CommandFastPath(app)
    config = uvicorn.Config(
        # /realtime and /ws/app write their frames straight to uvicorn's connection (realtime_writer);
        # a response in one piece goes out in one write (one_write); a REST command skips
        # Starlette's middleware and routers (CommandFastPath)
        expose_send(one_write(fast_path, logs_itself=under_api)),
        lifespan="on",
        # httptools (uvicorn's C parser): a REST request costs a fraction of h11's pure-Python parsing
        http="httptools",
        ws="websockets-sansio",
        ws_max_size=max_size,  # frames above ws_max_frame_bytes get an error; above this, 1009
        ws_per_message_deflate=False,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's records go to the process's handler: one format (nxg_mqtt/logs.py)
        access_log=True,  # paths redacted by logs.RedactAccess: no ?token= / ?api_key= values
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
        # with TLS on, the bridge speaks HTTPS and wss:// only (uvicorn builds the context from these)
        ssl_certfile=str(settings.tls_cert) if settings.tls else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls else None,
    )
    server = _Server(config)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, OneAccessLine) for f in access.filters):
        access.addFilter(OneAccessLine())  # /api/v1 requests: ApiHeaders' line is the access line

    async def serve() -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits when the lifespan fails to start
            raise RuntimeError(f"the bridge failed to start (exit {exc.code})") from None

    watcher = None
    # a bridge in a process whose core watches no signals (`nxg-mqtt bridge`, or joining another
    # broker) watches them itself; embedded in such a process it needs the admin password's only:
    # the remembered hash must follow a change made by another process
    kinds: frozenset[SignalKind] | None = None
    if not embedded:
        kinds = BRIDGE_KINDS
    elif not core.signals.running:
        kinds = frozenset({SignalKind.ADMIN_PASSWORD})
    if kinds is not None:
        watcher = SignalWatcher(
            core.store, core.devices, core.commands, settings.signal_poll_s, core.keys, kinds=kinds, admin=core.admin
        )
    task = asyncio.create_task(serve(), name="nxg-bridge-http")
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the bridge stopped during start-up")
            await asyncio.sleep(0.01)
        if watcher is not None:
            await watcher.start()  # after the lifespan: its listeners (sockets, gateway) are registered
        yield BridgeServer(http_port, app, config, fast_path)
    finally:
        if watcher is not None:
            await watcher.close()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
