"""What a new user tripped on (issue 8): config.h's host, and seed 003's severity `Info`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge import config_h
from tests.bridge.helpers import Stack, open_stack, pair_gateway, recv_until, send_json
from tests.factories import make_settings


def server_host(text: str) -> str:
    line = next(line for line in text.splitlines() if line.startswith("#define NXG_SERVER_HOST"))
    return line.split('"')[1]


async def test_config_h_names_the_host_the_request_came_in_on(stack: Stack) -> None:
    await stack.create_device("Host-1")
    response = await stack.http.get("/api/devices/Host-1/config.h", headers={"Host": "hub.example.net:8080"})
    assert server_host(response.text) == "hub.example.net"  # the Host header, without its port
    assert f"#define NXG_MQTT_PORT         {stack.broker.mqtt_port}\n" in response.text  # not 8080


@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "127.0.0.1:8080", "[::1]:8080"])
async def test_config_h_fetched_through_loopback_names_this_machine(stack: Stack, host: str) -> None:
    await stack.create_device("Host-2")
    response = await stack.http.get("/api/devices/Host-2/config.h", headers={"Host": host})
    named = server_host(response.text)
    address = config_h.machine_address()
    if address is None:  # a machine without any route: nothing better to offer
        assert config_h.is_loopback(named)
    else:
        assert named == address and not config_h.is_loopback(named)


async def test_public_host_wins(tmp_path: Path) -> None:
    async with open_stack(make_settings(tmp_path, public_host="mqtt.example.com")) as stack:
        await stack.create_device("Host-3")
        for host in ("localhost:8080", "10.1.2.3:8080"):
            response = await stack.http.get("/api/devices/Host-3/config.h", headers={"Host": host})
            assert server_host(response.text) == "mqtt.example.com"


def test_hosts_that_are_loopback() -> None:
    for host in ("localhost", "LOCALHOST", "dev.localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]", "0.0.0.0"):
        assert config_h.is_loopback(host), host
    for host in ("192.168.1.10", "hub.example.net", "10.0.0.1", "fe80::1"):
        assert not config_h.is_loopback(host), host
    assert config_h.device_host("hub.example.net", None) == "hub.example.net"
    assert config_h.device_host('evil"; #include', None) != 'evil"; #include'  # client input stays out of C


@pytest.mark.parametrize("severity", ["Trace", "Debug", "Info", "Warning", "Error", "Critical"])
async def test_events_with_seed_003_severities_reach_the_app(stack: Stack, severity: str) -> None:
    ws, _ = await pair_gateway(stack, "Sev-1")
    app = await stack.app_socket()
    await send_json(ws, {"t": "event", "type": "door_forced", "severity": severity})
    event = await recv_until(app, "event", serial="Sev-1")
    assert event["type"] == "door_forced" and event["severity"] == severity
    await app.close()
    await ws.close()
