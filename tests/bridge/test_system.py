"""Seed 002's Health and System endpoints and `GET /metrics` (parsed by prometheus_client's parser)
on a running stack: the counters move as a real device publishes, is refused and is commanded."""

from __future__ import annotations

import asyncio
import json

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.bridge.helpers import Stack
from tests.mqtt_client import TestClient, pair_over_mqtt, wait_for


async def scrape(stack: Stack, path: str = "/metrics") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(base_url=stack.base, timeout=5) as anonymous:  # no credentials needed
        response = await anonymous.get(path)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_move_as_a_device_publishes_is_refused_and_is_commanded(stack: Stack) -> None:
    before = await scrape(stack)
    assert value(before, "nxg_process_resident_memory_bytes") > 0
    code = await stack.create_device("met-1")
    token = str((await pair_over_mqtt(stack.broker.mqtt_port, code, "p-met-1"))["token"])
    device = TestClient("met-1")
    refused = TestClient("met-1")
    try:
        assert await refused.connect(stack.broker.mqtt_port, "met-1", "wrong-token") == 5
        assert await device.connect(stack.broker.mqtt_port, "met-1", token) == 0
        assert await device.subscribe("nxg/met-1/cmd") == [1]
        await device.publish("nxg/met-1/telemetry", json.dumps({"temp": 1}))
        await device.publish("nxg/met-1/telemetry", b"not json")
        command = await stack.core.commands.submit("met-1", "open", None, {}, source="test")
        assert json.loads((await device.next_message()).payload)["id"] == command.id
        await device.publish("nxg/met-1/ack", json.dumps({"t": "ack", "id": command.id, "ok": True}))

        for _ in range(50):  # the ack and the rejected payload are handled asynchronously
            after = await scrape(stack, "/api/v1/metrics")
            if (
                value(after, "nxg_payloads_rejected_total", reason="not_json")
                and len([n for (n, _) in after if n == "nxg_commands_total"]) >= 2
            ):
                break
            await asyncio.sleep(0.05)
        assert (
            value(after, "nxg_mqtt_connects_refused_total", code="5")
            == value(before, "nxg_mqtt_connects_refused_total", code="5") + 1
        )
        assert value(after, "nxg_mqtt_connects_accepted_total") >= value(before, "nxg_mqtt_connects_accepted_total") + 2
        assert value(after, "nxg_mqtt_messages_received_total") >= value(before, "nxg_mqtt_messages_received_total") + 3
        assert value(after, "nxg_payloads_rejected_total", reason="not_json") == 1
        assert value(after, "nxg_commands_total", status="dispatched") == 1
        assert value(after, "nxg_mqtt_connections", role="device", transport="tcp") == 1
        assert value(after, "nxg_websocket_clients", surface="app") == 0
        assert value(after, "nxg_broker_link_up") == 1
    finally:
        device.close()
        refused.close()


async def test_health_and_system_endpoints_have_seed_002_shapes(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base, timeout=5) as anonymous:
        health = (await anonymous.get("/api/v1/health")).json()
        assert health["status"] == "ok" and health["timestamp"].endswith("Z")
        assert health["services"]["database"] == {"status": "operational"} and "mqtt" in health["services"]
        assert health["metrics"] == {"active_devices": 0}
        for base in ("", "/api/v1"):
            assert (await anonymous.get(base + "/health/live")).json() == {"status": "ok"}
            ready = await anonymous.get(base + "/health/ready")
            assert ready.status_code == 200 and ready.json()["status"] == "ok"
        status = (await anonymous.get("/api/v1/status")).json()
        assert set(status) == {"system", "status", "beta", "version", "protocol"} and status["status"] == "operational"
        version = (await anonymous.get("/api/v1/version")).json()
        assert set(version) == {"version", "protocol"}
        changelog = (await anonymous.get("/api/v1/changelog")).json()
        assert changelog["changelog"][0]["version"] == "Unreleased" and changelog["changelog"][0]["changes"]
        await stack.broker.close()  # the broker goes away: not ready, degraded
        assert await wait_for(lambda: not stack.bridge.state.link.connected)
        for path in ("/health/ready", "/api/v1/health/ready", "/api/v1/health"):
            response = await anonymous.get(path)
            assert response.status_code == 503 and response.json()["status"] == "degraded"
            assert response.json()["checks"]["mqtt"] is False
