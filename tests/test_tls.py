"""TLS on every listener: MQTT over TLS and over wss:// with paho, HTTPS and the bridge's wss://,
refusal with a wrong CA, and a certificate reloaded without dropping a connected device."""

from __future__ import annotations

import asyncio
import json
import shutil
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
