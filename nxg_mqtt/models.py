"""Value types shared by the store, the services and the surfaces (frozen, slotted)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nxg_mqtt.protocol import MessageType as MessageType  # re-exported for the store
from nxg_mqtt.protocol import RevokeReason, SignalKind, app_message


def now_ms() -> int:
    return int(time.time() * 1000)


class DeviceClock:
    """Receive stamps that never repeat for one device in this process.

    History pages on a ts (`before`, `next_before`: PROTOCOL §7), so two rows of one device in the
    same millisecond could be split by a page boundary, and `limit` would have to bend around
    them. A device's stamps strictly increase instead: a row in the millisecond of its last one
    gets the next millisecond (a device would have to send over 1,000 messages a second to run
    ahead of the clock). Only devices stamped at or past the current millisecond are remembered.
    """

    __slots__ = ("_last", "_ms")

    def __init__(self) -> None:
        self._ms = 0
        self._last: dict[str, int] = {}

    def stamp(self, serial: str) -> int:
        now = now_ms()
        if now > self._ms:
            self._ms = now
            if self._last:
                self._last = {s: t for s, t in self._last.items() if t >= now}
        key = serial.lower()
        last = self._last.get(key)
        ts = now if last is None or last < now else last + 1
        self._last[key] = ts
        return ts


_clock = DeviceClock()


def history_ts(serial: str) -> int:
    """The ts of a new history row of `serial`: its receive time, unique for that device."""
    return _clock.stamp(serial)


@dataclass(frozen=True, slots=True)
class Device:
    serial: str
    name: str | None
    code: str
    paired: bool
    online: bool
    last_seen: int | None
    created_at: int
    revoked: bool = False
    tenant: str = ""  # the owning tenant (PROTOCOL §5: invisible to every other tenant)
    device_type: str | None = None
    home_id: str | None = None
    room_id: str | None = None
    key_version: int = 0  # seed 002's secret version: 0 until registered or rotated there

    def public(self) -> dict[str, Any]:
        """The device object of seed 000's REST API (never the token)."""
        return {
            "serial": self.serial,
            "name": self.name,
            "online": self.online,
            "paired": self.paired,
            "last_seen": self.last_seen,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One stored message; `body` holds the app object's fields other than serial and ts."""

    serial: str
    type: MessageType
    ts: int
    body: dict[str, Any]
    device_ts: int | None = None
    id: int | None = None
    # a broker's redelivery (MQTT DUP) of a message this store may already hold: written only if
    # no row has the same serial, type, ts and body (a serving process killed after its commit
    # but before its PUBACK gets the message again when it resumes its session)
    redelivered: bool = False

    def app_message(self) -> dict[str, Any]:
        """The flat object `/ws/app` delivers and `/api/history` lists (`protocol.app_message`)."""
        return app_message(self.serial, self.type, self.ts, self.body, self.device_ts)


class CommandStatus(StrEnum):
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    ACKED = "acked"
    FAILED = "failed"
    TIMEOUT = "timeout"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @property
    def final(self) -> bool:
        return self not in (CommandStatus.QUEUED, CommandStatus.DISPATCHED)


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    serial: str
    action: str
    target: str | None
    params: dict[str, Any]
    status: CommandStatus
    created_at: int
    expires_at: int
    source: str = "api"
    ref: str | None = None
    error: str | None = None
    result: Any = None
    dispatched_at: int | None = None
    finished_at: int | None = None

    def closed(self, status: CommandStatus, finished_at: int, error: str | None, result: Any) -> Command:
        """This command in its final `status`: `dataclasses.replace` spelled out, at half its cost
        (it runs once per ack)."""
        return Command(
            self.id,
            self.serial,
            self.action,
            self.target,
            self.params,
            status,
            self.created_at,
            self.expires_at,
            self.source,
            self.ref,
            error,
            result,
            self.dispatched_at,
            finished_at,
        )

    def device_message(self) -> dict[str, Any]:
        """What the device receives on `nxg/{S}/cmd` (and `/ws/gateway`)."""
        message: dict[str, Any] = {
            "t": MessageType.CMD.value,
            "id": self.id,
            "action": self.action,
            "params": self.params,
        }
        if self.target is not None:
            message["target"] = self.target
        return message

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "command_id": self.id,
            "serial": self.serial,
            "target": self.target,
            "action": self.action,
            "params": self.params,
            "ref": self.ref,
            "status": self.status.value,
            "error": self.error,
            "result": self.result,
            "created_at": self.created_at,
            "dispatched_at": self.dispatched_at,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    """One stored version of a device's manifest (its capabilities as validated)."""

    serial: str
    version: int
    capabilities: list[dict[str, Any]]
    source: str  # device | api | cli
    created_at: int


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    serial: str
    transport: str
    remote: str | None
    connected_at: int
    ended_at: int | None
    reason: str | None
    id: int | None = None
    connection_id: str | None = None  # set for a connection another node registered (seed 003)
    node_id: str | None = None  # None: this node


@dataclass(frozen=True, slots=True)
class ConnectionOpened:
    serial: str
    transport: str
    remote: str | None
    connected_at: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    serial: str
    connected_at: int  # with the serial, names the log entry
    ended_at: int
    reason: str


@dataclass(frozen=True, slots=True)
class OnlineChanged:
    serial: str
    online: bool
    ts: int


PresenceOp = ConnectionOpened | ConnectionClosed | OnlineChanged


@dataclass(frozen=True, slots=True)
class Signal:
    """A change made by another process (the CLI) that live sessions must see."""

    id: int
    kind: SignalKind
    serial: str | None  # the target: a device's serial, an API key's id for KEY_REVOKED
    reason: RevokeReason | None = None  # for SignalKind.REVOKED


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as stored, without its secret (PROTOCOL §5/§6)."""

    id: str
    name: str
    prefix: str  # the first characters of the key, to recognise it in a list
    role: str  # admin | user | viewer
    scopes: tuple[str, ...]
    devices: tuple[str, ...] | None  # None: every device
    created_at: int
    last_used_at: int | None = None
    revoked_at: int | None = None
    tenant: str = ""  # the owning tenant: the key sees nothing of any other

    def sees(self, serial: str) -> bool:
        return self.devices is None or serial in self.devices

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "role": self.role,
            "scopes": list(self.scopes),
            "devices": None if self.devices is None else list(self.devices),
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "revoked": self.revoked_at is not None,
        }


@dataclass(slots=True)
class Counters:
    """Named counters (rejections by reason, drops, …) for metrics and tests."""

    values: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, amount: int = 1) -> None:
        self.values[name] = self.values.get(name, 0) + amount

    def get(self, name: str) -> int:
        return self.values.get(name, 0)


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str  # a UUID; the default tenant's is `settings.tenant_id`
    name: str
    slug: str
    created_at: int


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """One version of a device's secret (seed 002's key history: never the secret)."""

    version: int
    created_at: int
    retired_at: int | None
    reason: str | None

    def public(self) -> dict[str, Any]:
        return {
            "key_version": self.version,
            "created_at": self.created_at,
            "retired_at": self.retired_at,
            "active": self.retired_at is None,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Home:
    id: str
    tenant: str
    name: str
    timezone: str
    created_at: int

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "home_name": self.name, "timezone": self.timezone, "created_at": self.created_at}


@dataclass(frozen=True, slots=True)
class Room:
    id: str
    tenant: str
    home_id: str
    name: str
    created_at: int

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "home_id": self.home_id, "name": self.name, "created_at": self.created_at}


@dataclass(frozen=True, slots=True)
class Group:
    tenant: str
    slug: str
    name: str
    description: str | None
    created_at: int
    device_ids: tuple[str, ...] = ()

    def public(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "name": self.name,
            "description": self.description,
            "device_ids": list(self.device_ids),
            "created_at": self.created_at,
        }
