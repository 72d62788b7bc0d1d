"""Presence: retained `nxg/{S}/presence`, the store's online/last_seen, and the connection log."""

from __future__ import annotations

import asyncio
import json

from tests.broker.plugins.helpers import Stack


async def _presence(watcher_msgs: list[bytes]) -> list[bool]:
    return [json.loads(p)["online"] for p in watcher_msgs]


async def _log(stack: Stack, serial: str) -> list[tuple[str | None]]:
    await stack.core.ingest.flush()  # the connection log is written with the history batches
    return [(c.reason,) for c in await stack.core.store.connections.for_device(serial)]


async def test_online_then_clean_disconnect(stack: Stack) -> None:
    watcher = await stack.bridge_client("nxg/+/presence")
    device, _ = await stack.device("pr-a")
    first = await watcher.next_message()
    assert first.topic == "nxg/pr-a/presence" and json.loads(first.payload)["online"] is True
    assert (await stack.core.devices.get("pr-a")).online
    device.close()
    second = await watcher.next_message()
    assert json.loads(second.payload)["online"] is False
    assert not (await stack.core.devices.get("pr-a")).online
    assert await _log(stack, "pr-a") == [("disconnected",)]
    # retained: a late subscriber learns the current state
    late = await stack.bridge_client("nxg/pr-a/presence")
    retained = await late.next_message()
    assert retained.retain and json.loads(retained.payload)["online"] is False


async def test_silent_device_goes_offline_after_one_and_a_half_keepalives(stack: Stack) -> None:
    watcher = await stack.bridge_client("nxg/+/presence")
    device, _ = await stack.device("pr-b", keepalive=1)
    assert json.loads((await watcher.next_message()).payload)["online"] is True
    device.client.loop_stop()  # stop answering and pinging, keep the socket open
    started = asyncio.get_running_loop().time()
    offline = await watcher.next_message(timeout=4)
    elapsed = asyncio.get_running_loop().time() - started
    assert json.loads(offline.payload)["online"] is False
    assert 1.0 <= elapsed <= 3.0
    assert await _log(stack, "pr-b") == [("keepalive timeout",)]
    sock = device.client.socket()
    if sock is not None:
        sock.close()


async def test_takeover_keeps_presence_online_without_flicker(stack: Stack) -> None:
    watcher = await stack.bridge_client("nxg/+/presence")
    first, token = await stack.device("pr-c")
    assert json.loads((await watcher.next_message()).payload)["online"] is True
    second = stack.client("pr-c")
    assert await second.connect(stack.port, "pr-c", token) == 0
    assert await first.wait_disconnected(2)
    assert await watcher.no_message(0.5), "takeover must not publish presence"
    assert (await stack.core.devices.get("pr-c")).online
    log = await _log(stack, "pr-c")
    assert ("taken over",) in log and (None,) in log
    second.close()
    assert json.loads((await watcher.next_message()).payload)["online"] is False


async def test_kicked_device_is_logged(stack: Stack) -> None:
    device, _ = await stack.device("pr-d")
    await stack.core.devices.reset("pr-d")
    assert await device.wait_disconnected(1.5)
    await asyncio.sleep(0.1)
    reasons = [r for (r,) in await _log(stack, "pr-d")]
    assert reasons == ["kicked"]


async def test_deleted_device_leaves_no_retained_presence(stack: Stack) -> None:
    device, _ = await stack.device("pr-e")
    device.close()
    await asyncio.sleep(0.2)
    await stack.core.devices.delete("pr-e")
    late = await stack.bridge_client("nxg/pr-e/presence")
    assert await late.no_message(0.5)
