"""The whole system on a broker that is not the embedded one, as one async context manager:
`nxg-mqtt serve --broker mosquitto|external` runs it, the tests run the same.

    async with open_foreign_stack(settings, mqtt_url=None) as stack:   # --broker mosquitto
        print(stack.mqtt_port, stack.bridge.http_port, stack.hooks_url)

Order (and the reverse at the end): the core, the hook listener (the broker asks it from its first
CONNECT on), Mosquitto (when this process owns it), the worker (shared subscriptions; the core
publishes presence, commands and kicks through its link), the bridge. The process that owns a
fresh Mosquitto recovers presence and runs the command sweep (`open_core(serve=True)`); a process
joining a broker that already runs only writes (`writer=True`): it must not mark everyone offline.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

from bridge.server import BridgeServer, open_bridge
from nxg_mqtt.core import Core, open_core
from nxg_mqtt.hooks.http import HookListener, open_hook_listener
from nxg_mqtt.hooks.mosquitto import Mosquitto, run_mosquitto
from nxg_mqtt.hooks.service import HookService
from nxg_mqtt.hooks.worker import MqttWorker
from nxg_mqtt.metrics import Family, counter
from nxg_mqtt.settings import Settings


@dataclass(frozen=True, slots=True)
class ForeignStack:
    core: Core
    hooks: HookService
    listener: HookListener
    mosquitto: Mosquitto | None
    worker: MqttWorker
    bridge: BridgeServer
    mqtt_host: str
    mqtt_port: int
    ws_port: int | None


@contextlib.asynccontextmanager
async def open_foreign_stack(
    settings: Settings, broker_at: tuple[str, int] | None = None, *, admin: bool = True
) -> AsyncIterator[ForeignStack]:
    """`broker_at` None: start Mosquitto here (`--broker mosquitto`); else join that broker."""
    from nxg_mqtt.cli import ensure_admin_password

    owner = broker_at is None
    async with open_core(settings, serve=owner, writer=True) as core, contextlib.AsyncExitStack() as stack:
        if admin:
            await ensure_admin_password(core)
        hooks = HookService(core)
        listener = await stack.enter_async_context(open_hook_listener(hooks, settings))
        mosquitto: Mosquitto | None = None
        if broker_at is None:
            mosquitto = await stack.enter_async_context(run_mosquitto(settings, listener.url))
            stack.callback(core.metrics.add_source(_drop_metrics(mosquitto)))
            host, port, ws_port = "127.0.0.1", mosquitto.mqtt_port, mosquitto.ws_port
        else:
            (host, port), ws_port = broker_at, settings.ws_port
        worker = MqttWorker(core, hooks, host, port, reports=owner or settings.hook_reports)
        await worker.start()
        stack.push_async_callback(worker.close)
        stack.callback(core.outbox.connect(worker.link))
        bound = replace(settings, mqtt_port=port, ws_port=ws_port)
        bridge = await stack.enter_async_context(open_bridge(bound, core, host, port, mqtt_ws_port=ws_port))
        yield ForeignStack(core, hooks, listener, mosquitto, worker, bridge, host, port, ws_port)


def _drop_metrics(mosquitto: Mosquitto) -> Callable[[], list[Family]]:
    def source() -> list[Family]:
        return [
            counter(
                "nxg_mosquitto_drop_notices",
                "Mosquitto's notices that a subscriber's queue was full and messages were dropped, by"
                " subscriber (ingest: a serving process; those messages were acknowledged and never stored)",
                "subscriber",
                {"ingest": mosquitto.drops["ingest"], "other": mosquitto.drops["other"]},
            )
        ]

    return source
