"""The core: the store and every service, wired once and owned by one async context manager.

    async with open_core(settings, serve=True) as core:
        disconnect = core.outbox.connect(broker)   # where presence, commands and Warning events go
        ...

Every service gets its dependencies when it is built; the one whose target comes later (the
broker is built on the core) is the `Outbox`, a Publisher the transport connects to.

`serve=True` is for the process that runs the broker: it starts the ingest writer, the command
sweep and the signal watcher, and recovers presence after a crash. `writer=True` alone (a bridge
running against a separate broker) starts only the ingest writer. The CLI opens the core with
neither; its changes reach a running server through signals.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from nxg_mqtt.metrics import Metrics, counter, ingest_families
from nxg_mqtt.node import node_id
from nxg_mqtt.protocol import RevokeReason
from nxg_mqtt.services import Outbox
from nxg_mqtt.services.admin import AdminCredentials
from nxg_mqtt.services.api_keys import ApiKeyService
from nxg_mqtt.services.audit import AuditLog
from nxg_mqtt.services.certificates import CertificateService
from nxg_mqtt.services.commands import CommandService
from nxg_mqtt.services.connection_log import ConnectionLog
from nxg_mqtt.services.device_tokens import DeviceTokenService
from nxg_mqtt.services.devices import DeviceService
from nxg_mqtt.services.firmware import FirmwareService
from nxg_mqtt.services.groups import GroupService
from nxg_mqtt.services.history import HistoryService
from nxg_mqtt.services.homes import HomeService
from nxg_mqtt.services.ingest import IngestService
from nxg_mqtt.services.manifests import ManifestService
from nxg_mqtt.services.observations import ObservationService
from nxg_mqtt.services.presence import PresenceService
from nxg_mqtt.services.properties import PropertyService
from nxg_mqtt.services.proxy import ProxyService
from nxg_mqtt.services.registration import RegistrationService
from nxg_mqtt.services.signals import SignalWatcher
from nxg_mqtt.services.tenants import TenantService
from nxg_mqtt.settings import Settings
from nxg_mqtt.store import Store, open_store


@dataclass
class Core:
    settings: Settings
    store: Store
    devices: DeviceService
    ingest: IngestService
    presence: PresenceService
    commands: CommandService
    signals: SignalWatcher
    history: HistoryService
    admin: AdminCredentials
    outbox: Outbox
    manifests: ManifestService
    keys: ApiKeyService
    tenants: TenantService
    homes: HomeService
    groups: GroupService
    registration: RegistrationService
    observations: ObservationService
    properties: PropertyService
    certificates: CertificateService
    tokens: DeviceTokenService
    proxy: ProxyService
    connections: ConnectionLog
    audit: AuditLog
    node_id: str  # this process's cluster node (seed 003's nodeId), stable per data directory
    firmware: FirmwareService
    metrics: Metrics = field(default_factory=Metrics)  # this process's, read by GET /metrics


@asynccontextmanager
async def open_core(settings: Settings, *, serve: bool = False, writer: bool = False) -> AsyncIterator[Core]:
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(settings.db_path, settings.tenant_id))
        publisher = Outbox()
        devices = DeviceService(store, settings)
        ingest = IngestService(store, settings, publisher)
        presence = PresenceService(store, ingest, publisher)
        manifests = ManifestService(store, settings, devices, ingest)
        commands = CommandService(store, settings, devices, presence, ingest, publisher, manifests)
        keys = ApiKeyService(store)
        admin = AdminCredentials(store, settings.admin_failures_per_minute)
        signals = SignalWatcher(store, devices, commands, settings.signal_poll_s, keys, admin=admin)
        history = HistoryService(store, devices, ingest.flush)
        tenants = TenantService(store, keys)
        homes = HomeService(store)
        groups = GroupService(store, tenants)
        registration = RegistrationService(store, devices, tenants, homes)
        core = Core(
            settings,
            store,
            devices,
            ingest,
            presence,
            commands,
            signals,
            history,
            admin,
            publisher,
            manifests,
            keys,
            tenants,
            homes,
            groups,
            registration,
            ObservationService(ingest, settings.max_payload_bytes),
            PropertyService(store, settings, publisher),
            CertificateService(store, devices),
            DeviceTokenService(store, settings),
            ProxyService(settings, publisher),
            ConnectionLog(store, ingest.flush),
            AuditLog(store),
            node_id(settings.data_dir),
            FirmwareService(store, settings, devices, commands, ingest, groups, homes),
        )

        async def forget_deleted(serial: str, why: RevokeReason) -> None:
            # a deleted device leaves no retained presence behind on the broker
            if why is RevokeReason.DELETE:
                manifests.forget(serial)
                await presence.forget(serial)
                await core.properties.forget(serial)

        devices.on_revoked(forget_deleted)
        devices.on_revoked(tenants.forget_deleted)
        await tenants.load()
        core.metrics.add_source(
            lambda: [
                counter(
                    "nxg_payloads_rejected", "Device payloads refused, by reason", "reason", ingest.rejected.values
                ),
                counter("nxg_commands", "Command events, by status", "status", commands.counters.values),
                *ingest_families(ingest),
            ]
        )
        # closed in reverse: the writer flushes last, after everything that feeds it has stopped
        stack.push_async_callback(ingest.close)
        if serve or writer:
            await ingest.start()
            # rollout states follow the OTA events and `fw` statuses this process ingests
            await core.firmware.start()
            stack.push_async_callback(core.firmware.close)
        if serve:
            await presence.recover()
            devices.online_now = presence.is_online
            await commands.start()
            stack.push_async_callback(commands.close)
            await signals.start()
            stack.push_async_callback(signals.close)
        yield core
