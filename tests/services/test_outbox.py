"""The core's Outbox: given to the services at construction; the running broker connects to it."""

from __future__ import annotations

from pathlib import Path

from nxg_mqtt.broker.embedded import open_broker
from nxg_mqtt.core import open_core
from tests.factories import make_settings
from tests.mqtt_client import TestClient


async def test_core_messages_go_to_the_broker_that_runs_and_nowhere_after(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, internal_secret="s")
    async with open_core(settings, serve=True) as core:
        async with open_broker(core) as broker:
            watcher = TestClient("watcher")
            assert await watcher.connect(broker.mqtt_port, "bridge", "s") == 0
            await watcher.subscribe("nxg/#")
            assert await core.outbox.publish("nxg/o1/presence", b'{"online":true}', qos=1, retain=True) == 1
            assert (await watcher.next_message()).topic == "nxg/o1/presence"
            watcher.close()
        assert await core.outbox.publish("nxg/o1/presence", b"", retain=True) == 0, "the stopped broker is gone"
        async with open_broker(core) as restarted:
            await core.outbox.publish("nxg/o2/presence", b'{"online":false}', retain=True)
            assert "nxg/o2/presence" in restarted.retained
