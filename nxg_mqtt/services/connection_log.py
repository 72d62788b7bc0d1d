"""The connection log as seed 003's actions see it: this node's own sessions (written by presence)
and the connections other cluster nodes register and unregister.

A connection is named by its `connection_id` when a node registered it, else by its log row id;
registered ids may therefore not be all digits. Ending a connection twice, or registering an id
twice, is a ConflictError; an unknown id is `CONNECTION_NOT_FOUND`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from nxg_mqtt.errors import ConflictError, NotFoundError, ValidationError
from nxg_mqtt.models import ConnectionRecord, now_ms
from nxg_mqtt.protocol import ConnectionEndReason
from nxg_mqtt.store import Store


class ConnectionLog:
    def __init__(self, store: Store, flush: Callable[[], Awaitable[int]] | None = None) -> None:
        self._store = store
        # presence writes the log with the next ingest batch: a reader commits it first
        self._flush = flush

    async def _committed(self) -> None:
        if self._flush is not None:
            await self._flush()

    async def entries(self, serial: str, limit: int, active_only: bool = False) -> list[ConnectionRecord]:
        """Newest first."""
        await self._committed()
        return await self._store.connections.log(serial, limit, active_only)

    async def summary(self) -> dict[str, tuple[int, int | None, bool]]:
        """Per device (lowercased serial): (latest connect, start of its open connection or None,
        whether another node reports it connected)."""
        await self._committed()
        return await self._store.connections.summary()

    async def connected_elsewhere(self, serial: str) -> bool:
        """Whether another node reports an open connection of the device."""
        return await self._store.connections.active_registered(serial)

    async def register(self, serial: str, connection_id: str, node_id: str) -> None:
        if connection_id.isdigit():
            # digits name this node's own log rows
            raise ValidationError('"connectionId" must not be all digits', details=[{"field": "connectionId"}])
        if not await self._store.connections.register(serial, connection_id, node_id, now_ms()):
            raise ConflictError(f"connection {connection_id} is registered already")

    async def owner(self, connection_id: str) -> str:
        """The device of a connection; NotFoundError (`CONNECTION_NOT_FOUND`) if there is none."""
        serial = await self._store.connections.serial_of(connection_id)
        if serial is None:
            raise NotFoundError(f"connection not found: {connection_id}", code="CONNECTION_NOT_FOUND")
        return serial

    async def end(self, connection_id: str, reason: ConnectionEndReason) -> None:
        if not await self._store.connections.end(connection_id, now_ms(), reason.value):
            raise ConflictError(f"connection {connection_id} has ended already")
