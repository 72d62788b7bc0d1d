"""Seed 002's Health and System endpoints and `GET /metrics` (parsed by prometheus_client's parser)
on a running stack: the counters move as a real device publishes, is refused and is commanded."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.bridge.helpers import Stack, open_stack
from tests.factories import make_settings
from tests.mqtt_client import TestClient, pair_over_mqtt


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
        await device.publish("nxg/met-1/status", json.dumps({"battery": 90}))

        for _ in range(50):  # the ack and the rejected payload are handled asynchronously
            after = await scrape(stack, "/api/v1/metrics")
            if (
                value(after, "nxg_payloads_rejected_total", reason="not_json")
                and value(after, "nxg_history_rows_written_total") >= 4
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

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        received, sent = "nxg_mqtt_channel_messages_received_total", "nxg_mqtt_channel_messages_sent_total"
        assert delta(received, channel="telemetry") == 2  # counted on receipt, the bad one too
        assert delta(received, channel="ack") == 1 and delta(received, channel="status") == 1
        assert delta(sent, channel="pair") >= 1  # the pairing reply (the request is the pairing plugin's)
        assert delta(sent, channel="cmd") >= 1  # the command, to the device (and the bridge)
        assert delta(sent, channel="telemetry") >= 1 and delta(sent, channel="event") >= 1  # to the bridge
        # telemetry, the Warning event, the ack and the status are history rows, in committed batches
        assert delta("nxg_history_rows_written_total") >= 4
        assert delta("nxg_ingest_batch_rows_count") >= 1 and delta("nxg_ingest_batch_rows_sum") >= 4
        assert delta("nxg_ingest_write_seconds_count") >= 1 and delta("nxg_ingest_write_seconds_sum") > 0
        assert value(after, "nxg_ingest_write_seconds_bucket", le="+Inf") == value(
            after, "nxg_ingest_write_seconds_count"
        )
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
        await stack.stop_broker()  # the broker goes away: not ready, degraded
        for path in ("/health/ready", "/api/v1/health/ready", "/api/v1/health"):
            response = await anonymous.get(path)
            assert response.status_code == 503 and response.json()["status"] == "degraded"
            assert response.json()["checks"]["mqtt"] is False


async def test_with_metrics_off_nothing_is_counted_by_channel(tmp_path: Path) -> None:
    async with open_stack(make_settings(tmp_path, metrics=False)) as stack:
        code = await stack.create_device("met-2")
        await pair_over_mqtt(stack.broker.mqtt_port, code, "p-met-2")
        samples = await scrape(stack)
    names = {name for name, _ in samples}
    assert "nxg_mqtt_messages_received_total" in names and "nxg_history_rows_written_total" in names
    assert not any("channel" in name for name in names)
