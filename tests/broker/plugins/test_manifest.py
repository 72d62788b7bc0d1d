"""The ingest plugin's manifest branch: a valid manifest is routed (and retained), an invalid one
is dropped and explained as a Warning event, an empty retained payload clears it."""

from __future__ import annotations

import json

from nxg_mqtt.protocol import MessageType
from nxg_mqtt.services.history import HistoryQuery
from tests.broker.plugins.helpers import Stack

MANIFEST = {"version": 1, "capabilities": [{"action": "open", "targets": ["turn1"]}]}


async def test_a_valid_manifest_is_retained_and_cleared_by_an_empty_payload(stack: Stack) -> None:
    device, _ = await stack.device("mf-a")
    await device.publish("nxg/mf-a/manifest", json.dumps(MANIFEST), retain=True)
    assert "nxg/mf-a/manifest" in stack.broker.retained
    late = await stack.bridge_client("nxg/mf-a/manifest")
    received = await late.next_message()
    assert received.retain and json.loads(received.payload) == MANIFEST, "delivered as sent, not stamped"
    await device.publish("nxg/mf-a/manifest", b"", retain=True)
    assert "nxg/mf-a/manifest" not in stack.broker.retained
    assert stack.core.ingest.rejected.values == {}


async def test_an_invalid_manifest_is_dropped_with_a_warning(stack: Stack) -> None:
    device, _ = await stack.device("mf-b")
    watcher = await stack.bridge_client("nxg/mf-b/#")
    await watcher.drain()  # the retained presence
    await device.publish("nxg/mf-b/manifest", json.dumps({"capabilities": [{"targets": []}]}), retain=True)
    received = await watcher.next_message()
    assert received.topic == "nxg/mf-b/event"
    warning = json.loads(received.payload)
    assert warning["type"] == "payload_rejected" and warning["body"]["channel"] == "manifest"
    assert "nxg/mf-b/manifest" not in stack.broker.retained
    assert await watcher.no_message(0.3), "the manifest itself went nowhere"
    assert stack.core.ingest.rejected.get("schema") == 1
    await stack.core.ingest.flush()
    [event] = (await stack.core.history.query(HistoryQuery("mf-b", MessageType.EVENT, 10, None))).messages
    assert event["ts"] == warning["server_ts"]


async def test_a_manifest_over_its_limit_is_refused(stack: Stack) -> None:
    device, _ = await stack.device("mf-c")
    big = {"capabilities": [{"action": "a" * (stack.core.settings.max_manifest_bytes + 1)}]}
    await device.publish("nxg/mf-c/manifest", json.dumps(big))
    assert stack.core.ingest.rejected.get("too_large") == 1
