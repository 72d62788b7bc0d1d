"""TLS on every listener: MQTT over TLS and over wss:// with paho, HTTPS and the bridge's wss://,
refusal with a wrong CA, and a certificate reloaded without dropping a connected device."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.bridge.helpers import PASSWORD, Stack, open_stack, recv_until, send_json
from tests.cli_process import read_until, start_serve, stop_serve
from tests.factories import make_settings
from tests.mqtt_client import TestClient


def dev_certs(directory: Path) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "nxg_mqtt", "cert", "dev", "--out", str(directory)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    files: dict[str, str] = json.loads(done.stdout)
    return files


@pytest.fixture
async def tls_stack(tmp_path: Path) -> AsyncIterator[tuple[Stack, dict[str, str]]]:
    certs = dev_certs(tmp_path / "certs")
    settings = make_settings(
        tmp_path,
        tls_cert=Path(certs["cert"]),
        tls_key=Path(certs["key"]),
        tls_ca=Path(certs["ca"]),
        mqtts_port=0,
        wss_port=0,
        plain=False,
    )
    async with open_stack(settings) as stack:
        yield stack, certs


async def test_mqtt_over_tls_and_wss_with_paho(tls_stack: tuple[Stack, dict[str, str]], tmp_path: Path) -> None:
    stack, certs = tls_stack
    port = stack.broker.mqtts_port
    assert port is not None and stack.broker.wss_port is not None and stack.broker.ws_port is None
    async with httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{stack.bridge.http_port}",
        verify=ssl.create_default_context(cafile=certs["ca"]),
        headers={"Authorization": f"Bearer {PASSWORD}"},
        timeout=5,
    ) as https:
        created = await https.post("/api/devices", json={"serial": "tls-1"})
        assert created.status_code == 201
        assert (await https.get("/health/live")).json() == {"status": "ok"}
    pairing = TestClient("p-tls-1", tls_ca=certs["ca"])
    assert await pairing.connect(port, "pair", str(created.json()["code"])) == 0
    assert await pairing.subscribe("nxg/pair/p-tls-1") == [1]
    await pairing.publish("nxg/pair/p-tls-1/req", "{}")
    token = json.loads((await pairing.next_message()).payload)["token"]
    pairing.close()
    device = TestClient("tls-1", tls_ca=certs["ca"])
    over_wss = TestClient("tls-1", transport="websockets", tls_ca=certs["ca"])
    try:
        assert await device.connect(port, "tls-1", token) == 0
        assert await over_wss.connect(stack.broker.wss_port, "tls-1", token) == 0  # takes the session over
        assert await device.wait_disconnected()
    finally:
        device.close()
        over_wss.close()


async def test_a_wrong_ca_is_refused(tls_stack: tuple[Stack, dict[str, str]], tmp_path: Path) -> None:
    stack, _ = tls_stack
    other = dev_certs(tmp_path / "other")
    wrong = ssl.create_default_context(cafile=other["ca"])

    def handshake() -> None:  # what paho's tls_set() does, on a socket this test closes itself
        with (
            socket.create_connection(("127.0.0.1", stack.broker.mqtts_port or 0), timeout=5) as raw,
            wrong.wrap_socket(raw, server_hostname="127.0.0.1"),
        ):
            pass

    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.to_thread(handshake)
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(
            f"wss://127.0.0.1:{stack.bridge.http_port}/ws/gateway",
            ssl=ssl.create_default_context(cafile=other["ca"]),
        )


async def test_the_bridge_speaks_wss_and_reloads_its_certificate_without_dropping_devices(
    tls_stack: tuple[Stack, dict[str, str]], tmp_path: Path
) -> None:
    stack, certs = tls_stack
    trusted = ssl.create_default_context(cafile=certs["ca"])
    fresh = dev_certs(tmp_path / "fresh")
    device = TestClient("tls-3", tls_ca=certs["ca"])
    assert await device.connect(stack.broker.mqtts_port or 0, "pair", "WRONG-CODE") == 4  # a TLS session
    device.close()
    # a new certificate from a new CA, written over the files, then reloaded (what SIGHUP does)
    ws = await connect(f"wss://127.0.0.1:{stack.bridge.http_port}/ws/gateway", ssl=trusted)
    shutil.copyfile(fresh["cert"], certs["cert"])
    shutil.copyfile(fresh["key"], certs["key"])
    stack.broker.reload_tls()
    stack.bridge.reload_tls()
    await send_json(ws, {"t": "pair", "code": "0000-0000"})  # the open socket still answers
    assert (await recv_until(ws, "pair_error"))["t"] == "pair_error"
    await ws.close()
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(f"wss://127.0.0.1:{stack.bridge.http_port}/ws/gateway", ssl=trusted)
    renewed = TestClient("tls-4", tls_ca=fresh["ca"])
    assert await renewed.connect(stack.broker.mqtts_port or 0, "pair", "WRONG-CODE") == 4
    renewed.close()


def _defines(header: str) -> dict[str, str]:
    return {m[0]: m[1].strip('"') for m in re.findall(r"^#define (NXG_\w+)\s+(\S+)", header, re.MULTILINE)}


def _c_string(header: str, name: str, tmp_path: Path) -> str:
    """What the C compiler makes of `name` in `header` (the CA string, as firmware sees it)."""
    (tmp_path / "config.h").write_text(header)
    source = tmp_path / "show.c"
    source.write_text(
        f'#include <stdio.h>\n#include "config.h"\nint main(void) {{ fputs({name}, stdout); return 0; }}\n'
    )
    binary = tmp_path / "show"
    subprocess.run(["cc", "-Wall", "-Werror", "-o", str(binary), str(source)], check=True, timeout=60)
    return subprocess.run([str(binary)], capture_output=True, text=True, check=True, timeout=10).stdout


def _handshake(port: int, cafile: str) -> None:
    """A TLS handshake as paho's tls_set() does it, on a socket closed here whatever happens."""
    context = ssl.create_default_context(cafile=cafile)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1"),
    ):
        pass


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
async def test_serve_over_tls_config_h_and_a_real_sighup(tmp_path: Path) -> None:
    """`nxg-mqtt serve` with TLS only: config.h sends devices to mqtts:// with the CA as a C string
    (compiled here), a device paired with that CA connects; then new certificate files and
    `kill -HUP`: the connected device stays, a new connection is served the new certificate."""
    certs = dev_certs(tmp_path / "certs")
    proc, text = await start_serve(
        *("--host", "127.0.0.1", "--mqtts-port", "0", "--wss-port", "0", "--http-port", "0", "--no-plain"),
        *("--tls-cert", certs["cert"], "--tls-key", certs["key"], "--tls-ca", certs["ca"]),
        *("--data", str(tmp_path / "data"), "--admin-password", PASSWORD, "--log-format", "json"),
        *("--public-host", "127.0.0.1"),
    )
    assert proc.stderr is not None
    device: TestClient | None = None
    try:
        mqtts = re.search(r"mqtts://127\.0\.0\.1:(\d+)", text)
        wss = re.search(r"MQTT/WSS +wss://127\.0\.0\.1:(\d+)/mqtt", text)
        https = re.search(r"HTTP +(https://127\.0\.0\.1:\d+)/", text)
        assert mqtts and wss and https and "mqtt://" not in text, text
        trusted = ssl.create_default_context(cafile=certs["ca"])
        async with httpx.AsyncClient(
            base_url=https.group(1), verify=trusted, headers={"Authorization": f"Bearer {PASSWORD}"}, timeout=10
        ) as http:
            code = (await http.post("/api/devices", json={"serial": "tls-hup"})).json()["code"]
            header = (await http.get("/api/devices/tls-hup/config.h")).text
        defines = _defines(header)
        port = int(mqtts.group(1))
        assert defines["NXG_TLS"] == "1" and defines["NXG_MQTT_PORT"] == str(port)
        assert defines["NXG_MQTT_URI"].endswith(f":{port}") and defines["NXG_MQTT_URI"].startswith("mqtts://")
        assert defines["NXG_MQTT_WS_URI"].startswith("wss://") and defines["NXG_MQTT_WS_PORT"] == wss.group(1)
        assert defines["NXG_GATEWAY_URI"] == f"wss://{https.group(1).removeprefix('https://')}/ws/gateway"
        ca_from_header = await asyncio.to_thread(_c_string, header, "NXG_CA_CERT_PEM", tmp_path)
        assert ca_from_header.strip() == (await asyncio.to_thread(Path(certs["ca"]).read_text)).strip()
        await asyncio.to_thread((tmp_path / "ca-from-config-h.pem").write_text, ca_from_header)

        pairing = TestClient("p-tls-hup", tls_ca=str(tmp_path / "ca-from-config-h.pem"))
        assert await pairing.connect(port, "pair", str(code)) == 0
        assert await pairing.subscribe("nxg/pair/p-tls-hup") == [1]
        await pairing.publish("nxg/pair/p-tls-hup/req", "{}")
        token = json.loads((await pairing.next_message()).payload)["token"]
        pairing.close()
        device = TestClient("tls-hup", tls_ca=str(tmp_path / "ca-from-config-h.pem"))
        assert await device.connect(port, "tls-hup", token) == 0
        assert await device.subscribe("nxg/tls-hup/cmd") == [1]

        fresh = dev_certs(tmp_path / "fresh")
        shutil.copyfile(fresh["cert"], certs["cert"])
        shutil.copyfile(fresh["key"], certs["key"])
        proc.send_signal(signal.SIGHUP)
        reloaded = json.loads(await read_until(proc.stderr, "TLS certificate reloaded", []))
        assert reloaded["level"] == "info"

        await device.publish("nxg/tls-hup/telemetry", json.dumps({"temp": 20.5}))  # PUBACKed: still connected
        assert not device.disconnected.is_set()
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.to_thread(_handshake, port, certs["ca"])  # the old CA no longer verifies it
        renewed = TestClient("tls-hup-new-ca", tls_ca=fresh["ca"])
        assert await renewed.connect(port, "pair", "WRONG-CODE") == 4  # the new certificate, verified
        renewed.close()
        await device.publish("nxg/tls-hup/telemetry", json.dumps({"temp": 20.6}))
        assert not device.disconnected.is_set()
    finally:
        if device is not None:
            device.close()
        await stop_serve(proc, timeout=20)
