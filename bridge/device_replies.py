"""Device messages that need an answer from the server, for a bridge on another broker.

With the embedded broker its plugins handle a device's `nxg/{S}/prop/set` (property reports) and
`nxg/{S}/http/res` (proxy answers). On Mosquitto or EMQX (`nxg-mqtt bridge --mqtt …`) nobody would:
the bridge's link receives them (it subscribes `nxg/#`), and this hands them to the same core
services. The broker's ACL (the shared decision of PROTOCOL §2) lets only device S publish there,
so the topic names the device.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from nxg_mqtt.core import Core
from nxg_mqtt.topics import Channel, parse_device_topic

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes, bool], None]


class DeviceReplies:
    def __init__(self, core: Core) -> None:
        self._core = core
        self._tasks: set[asyncio.Task[None]] = set()

    def wrap(self, then: MessageHandler) -> MessageHandler:
        """A link message handler that takes these messages and passes everything else on."""

        def on_message(topic: str, payload: bytes, retain: bool) -> None:
            if not self.handle(topic, payload):
                then(topic, payload, retain)

        return on_message

    def handle(self, topic: str, payload: bytes) -> bool:
        parsed = parse_device_topic(topic)
        if parsed is None:
            return False
        if parsed.channel is Channel.HTTP_RES:
            self._core.proxy.answer(parsed.serial, payload)
            return True
        if parsed.channel is Channel.PROP_SET:
            # the link calls handlers synchronously, in order; the write runs as a task
            task = asyncio.get_running_loop().create_task(self._core.properties.device_report(parsed.serial, payload))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return True
        return False

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)
