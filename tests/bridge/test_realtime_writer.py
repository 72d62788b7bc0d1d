"""How `/realtime` frames reach the sockets: encoded once (`text_frame`, checked against the
websockets library's own parser), written straight to uvicorn's transport over ws:// and wss://,
and through the ordinary ASGI `send` behind a server that does not expose its protocol."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from bridge.app import create_app
from bridge.realtime_writer import DirectSocket, frame_text, text_frame
from bridge.server import bind
from bridge.state import BridgeState
from nxg_mqtt.broker.embedded import open_broker
from nxg_mqtt.broker.server import NxgBroker
from nxg_mqtt.cli import ensure_admin_password
from nxg_mqtt.core import open_core
from tests.bridge.helpers import PASSWORD, open_stack, recv_json, send_json
from tests.factories import make_settings
from tests.test_tls import dev_certs

COUNT = 50


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_a_frame_is_what_a_websocket_client_parses(size: int) -> None:
    text = "é" + "x" * (size - 2) if size >= 2 else "x" * size  # `size` bytes of UTF-8
    assert len(text.encode()) == size
    frame = text_frame(text.encode())
    reader = StreamReader()
    reader.feed_data(frame)
    parser = Frame.parse(reader.read_exact, mask=False)  # a server's frame is not masked
    with pytest.raises(StopIteration) as done:
        next(parser)
    parsed: Frame = done.value.value
    assert parsed.opcode is Opcode.TEXT and parsed.fin and bytes(parsed.data).decode() == text
    assert not (parsed.rsv1 or parsed.rsv2 or parsed.rsv3)
    assert frame_text(frame) == text


def test_direct_writing_needs_uvicorns_protocol_in_the_scope() -> None:
    async def send(message: object) -> None: ...

    assert DirectSocket.of({}) is None
    assert DirectSocket.of({"nxg.server_send": send}) is None


async def publish(broker: NxgBroker, count: int) -> None:
    for n in range(count):
        body = json.dumps({"n": n, "server_ts": 1_700_000_000_000 + n}).encode()
        await broker.publish("nxg/S1/telemetry", body, qos=0)


async def receive_in_order(url: str, broker: NxgBroker, **kwargs: object) -> None:
    async with connect(url, **kwargs) as ws:  # type: ignore[arg-type]
        assert (await recv_json(ws))["type"] == "connected"
        await send_json(ws, {"type": "subscribe", "hardwareIds": ["S1"]})
        assert await recv_json(ws) == {"type": "subscribed", "hardwareIds": ["S1"]}
        await publish(broker, COUNT)
        for n in range(COUNT):
            message = await recv_json(ws)
            assert message["type"] == "device_data" and message["payload"] == {"n": n}, message
            assert message["timestamp"].startswith("2023-11-14T22:13:20.")


async def test_behind_uvicorn_frames_go_straight_to_the_transport(tmp_path: Path) -> None:
    async with open_stack(make_settings(tmp_path)) as stack:
        await receive_in_order(stack.ws_url(f"/realtime?token={PASSWORD}"), stack.broker)
        writer = stack.bridge.state.realtime
        assert (writer.direct_frames, writer.asgi_frames) == (COUNT, 0)


async def test_over_wss_too(tmp_path: Path) -> None:
    certs = dev_certs(tmp_path / "certs")
    settings = make_settings(
        tmp_path,
        tls_cert=Path(certs["cert"]),
        tls_key=Path(certs["key"]),
        tls_ca=Path(certs["ca"]),
        mqtts_port=0,  # every listener on a free port (the TLS defaults are fixed ports)
        wss_port=0,
        plain=False,
    )
    async with open_stack(settings) as stack:
        url = f"wss://127.0.0.1:{stack.bridge.http_port}/realtime?token={PASSWORD}"
        await receive_in_order(url, stack.broker, ssl=ssl.create_default_context(cafile=certs["ca"]))
        assert stack.bridge.state.realtime.direct_frames == COUNT


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def plain_asgi_server(tmp_path: Path) -> AsyncIterator[tuple[int, NxgBroker, BridgeState]]:
    """The bridge's app served by uvicorn *without* `expose_send`: as any other ASGI server."""
    settings = make_settings(tmp_path)
    async with open_core(settings, serve=True) as core, open_broker(core) as broker:
        await ensure_admin_password(core)
        app = create_app(settings, core, "127.0.0.1", broker.mqtt_port)
        sock = bind("127.0.0.1", 0)
        server = _QuietServer(uvicorn.Config(app, lifespan="on", ws="websockets-sansio", log_config=None))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                if task.done():
                    task.result()  # the start-up failed: say why
                await asyncio.sleep(0.01)
            yield int(sock.getsockname()[1]), broker, app.state.bridge
        finally:
            server.should_exit = True
            await task
            sock.close()


async def test_another_server_gets_the_frames_through_asgi_send(tmp_path: Path) -> None:
    async with plain_asgi_server(tmp_path) as (port, broker, state):
        await receive_in_order(f"ws://127.0.0.1:{port}/realtime?token={PASSWORD}", broker)
        assert (state.realtime.direct_frames, state.realtime.asgi_frames) == (0, COUNT)
