"""The store facade: one object holding a repository per aggregate, opened as a context manager."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from nxg_mqtt.store.api_keys import ApiKeyRepository
from nxg_mqtt.store.batch import HistoryWriter
from nxg_mqtt.store.certificates import CertificateRepository
from nxg_mqtt.store.commands import CommandRepository
from nxg_mqtt.store.commands_writer import CommandWriter
from nxg_mqtt.store.connections import ConnectionRepository
from nxg_mqtt.store.db import Database, open_database
from nxg_mqtt.store.device_keys import DeviceKeyRepository
from nxg_mqtt.store.devices import DeviceRepository
from nxg_mqtt.store.firmware import FirmwareRepository
from nxg_mqtt.store.groups import GroupRepository
from nxg_mqtt.store.homes import HomeRepository
from nxg_mqtt.store.journal import AuditRepository, KeyValueRepository, SignalRepository
from nxg_mqtt.store.manifests import ManifestRepository
from nxg_mqtt.store.messages import MessageRepository
from nxg_mqtt.store.properties import PropertyRepository
from nxg_mqtt.store.tenants import TenantRepository


class Store:
    def __init__(
        self, db: Database, tenant_id: str, history_writer: HistoryWriter, command_writer: CommandWriter
    ) -> None:
        self.db = db
        self.history_writer = history_writer
        self.command_writer = command_writer
        self.tenant_id = tenant_id
        self.devices = DeviceRepository(db, tenant_id)
        self.messages = MessageRepository(db, tenant_id)
        self.commands = CommandRepository(db, tenant_id)
        self.connections = ConnectionRepository(db, tenant_id)
        self.audit = AuditRepository(db, tenant_id)
        self.signals = SignalRepository(db, tenant_id)
        self.kv = KeyValueRepository(db, tenant_id)
        self.manifests = ManifestRepository(db, tenant_id)
        self.api_keys = ApiKeyRepository(db, tenant_id)
        self.tenants = TenantRepository(db)
        self.device_keys = DeviceKeyRepository(db)
        self.homes = HomeRepository(db)
        self.groups = GroupRepository(db)
        self.properties = PropertyRepository(db, tenant_id)
        self.certificates = CertificateRepository(db, tenant_id)
        self.firmware = FirmwareRepository(db)
        # one connection: transactions from different tasks must not interleave
        self._tx_lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Several writes committed together (the connection is in autocommit otherwise)."""
        async with self._tx_lock:
            await self.db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                await self.db.conn.execute("ROLLBACK")
                raise
            await self.db.conn.execute("COMMIT")


@asynccontextmanager
async def open_store(path: Path, tenant_id: str = "default") -> AsyncIterator[Store]:
    async with open_database(path) as db:
        writer = HistoryWriter(path, tenant_id)
        command_writer = CommandWriter(path, tenant_id)
        try:
            yield Store(db, tenant_id, writer, command_writer)
        finally:
            await command_writer.close()
            await writer.close()
