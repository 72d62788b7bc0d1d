"""Device properties (seed 003 + PROTOCOL §2): shared state between apps and the device, written
with compare-and-swap so that neither side overwrites a change it has not seen.

`set(…, expected=v)`: `Set` (the property was at version v; it is now v + 1), `VersionConflict`
(it is at another version: the current one is returned), or `Deleted` (it does not exist; an
`expected` of 0 means "create it only if absent"). Without `expected` the write always lands.
A `protected` property is the server's: the device reads it nowhere and cannot change it
(`Refused`). Versions start at 1 and grow by one per write, so a writer whose CAS succeeded
knows the new version without asking.

The device's view (PROTOCOL §2, `schemas/prop.json`): every change publishes, retained on
`nxg/{S}/prop`, `{"props":{name:{"value","version"}},"delta":{name:{"value","version"}|null}}` —
all non-protected properties plus what this change did (`null`: removed; a write to a protected
property has an empty delta, its name never reaches the device). A
retained copy (what a subscriber gets first) is read as a snapshot: `props` replaces what the
device held. A retained message cannot be set without also reaching live subscribers on every
broker, so the snapshot rides along with each delta rather than separately.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from nxg_mqtt.errors import DeviceNotFound, NxgError, PayloadRejected, ValidationError
from nxg_mqtt.messages import decode_object, load_json, schema_errors
from nxg_mqtt.models import now_ms
from nxg_mqtt.protocol import Schema
from nxg_mqtt.services import Publisher
from nxg_mqtt.settings import Settings
from nxg_mqtt.store import Store
from nxg_mqtt.store.properties import Property
from nxg_mqtt.topics import Channel, device_topic

log = logging.getLogger(__name__)

MAX_NAME = 128


class SetResult(StrEnum):
    """Seed 003's `SetDevicePropertyOutput` variants, plus `Refused` for a device's write that is
    not allowed (a protected property, a bad value: PROTOCOL §2's `prop/res`)."""

    SET = "Set"
    VERSION_CONFLICT = "VersionConflict"
    DELETED = "Deleted"
    REFUSED = "Refused"


@dataclass(frozen=True, slots=True)
class SetOutcome:
    result: SetResult
    version: int | None = None  # the new version (Set) or the current one (VersionConflict)
    error: str | None = None  # why it was Refused


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME or any(ord(ch) < 32 for ch in name):
        raise ValidationError(f'"name" must be a string of 1 to {MAX_NAME} printable characters')
    return name


def check_expected(expected: Any) -> int | None:
    if expected is None:
        return None
    if isinstance(expected, bool) or not isinstance(expected, int) or not 0 <= expected < 2**63:
        raise ValidationError('"expectedVersion" must be an integer ≥ 0')
    return expected


class PropertyService:
    def __init__(self, store: Store, settings: Settings, publisher: Publisher) -> None:
        self._store = store
        self._settings = settings
        self._publisher = publisher

    async def _device(self, serial: str) -> str:
        device = await self._store.devices.get(serial)
        if device is None:
            raise DeviceNotFound(serial)
        return device.serial

    def _encode(self, value: Any) -> str:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        if len(text.encode()) > self._settings.max_payload_bytes:
            raise ValidationError(f'"value" is larger than {self._settings.max_payload_bytes} bytes encoded')
        try:
            load_json(text, what="value")  # the one decoder's depth and number limits
        except PayloadRejected as exc:
            raise ValidationError(exc.message) from None
        return text

    async def set(
        self,
        serial: str,
        name: Any,
        value: Any,
        *,
        protected: bool | None = None,
        expected: int | None = None,
        by_device: bool = False,
    ) -> SetOutcome:
        serial = await self._device(serial)
        name = check_name(name)
        expected = check_expected(expected)
        if protected is not None and not isinstance(protected, bool):
            raise ValidationError('"protected" must be a boolean')
        text = self._encode(value)
        if by_device:
            current = await self._store.properties.get(serial, name)
            if current is not None and current.protected:
                return SetOutcome(SetResult.REFUSED, error=f"property {name!r} is protected")
            protected = None
        ts = now_ms()
        props = self._store.properties
        written = await props.update(serial, name, text, protected, ts, expected)
        if written is None:
            if expected is None or expected == 0:
                if await props.insert(serial, name, text, bool(protected), ts):
                    written = (1, bool(protected))
                elif expected is None:  # created meanwhile by another writer: this write lands on it
                    written = await props.update(serial, name, text, protected, ts, None)
            if written is None:
                current = await props.get(serial, name)
                if current is None:
                    return SetOutcome(SetResult.DELETED)
                return SetOutcome(SetResult.VERSION_CONFLICT, current.version)
        version, is_protected = written
        # a protected property is never named to the device; `props` shows it gone if it was there
        delta = {} if is_protected else {name: {"value": value, "version": version}}
        await self.publish(serial, delta)
        return SetOutcome(SetResult.SET, version)

    async def device_report(self, serial: str, raw: bytes) -> None:
        """A device's `nxg/{S}/prop/set` (PROTOCOL §2): the write, then its answer on
        `nxg/{S}/prop/res` `{"id","result","version"?,"error"?}`. A request that is not valid JSON
        or breaks `schemas/prop_set.json` is `Refused` with the reason (its `id` echoed if any).
        Whoever receives the report (the embedded broker's plugin, or a bridge on another broker)
        calls this; the broker's ACL has made sure that only device S publishes there."""
        request_id: Any = None
        reply: dict[str, Any]
        try:
            request = decode_object(raw, self._settings.max_payload_bytes)
            request_id = request.get("id")
            problem = schema_errors(Schema.PROP_SET, request)
            if problem is not None:
                raise PayloadRejected(f"prop/set does not match its schema: {problem}", code="schema")
            outcome = await self.set(
                serial, request["name"], request["value"], expected=request.get("expectedVersion"), by_device=True
            )
            reply = {"id": request_id, "result": outcome.result.value}
            if outcome.version is not None:
                reply["version"] = outcome.version
            if outcome.error is not None:
                reply["error"] = outcome.error
        except NxgError as exc:
            reply = {"id": request_id, "result": SetResult.REFUSED.value, "error": exc.message}
        try:
            await self._publisher.publish(device_topic(serial, Channel.PROP_RES), json.dumps(reply).encode(), qos=1)
        except Exception:
            log.exception("answering the property report of %s failed", serial)

    async def get(self, serial: str, name: Any) -> Property | None:
        return await self._store.properties.get(await self._device(serial), check_name(name))

    async def all(self, serial: str) -> list[Property]:
        return await self._store.properties.all(await self._device(serial))

    async def remove(self, serial: str, name: Any) -> bool:
        serial = await self._device(serial)
        name = check_name(name)
        if not await self._store.properties.delete(serial, name):
            return False
        await self.publish(serial, {name: None})
        return True

    async def publish(self, serial: str, delta: dict[str, Any] | None = None) -> None:
        """The device's view, retained on `nxg/{S}/prop` (with `delta` when a change caused it)."""
        props = {p.name: _wire(p) for p in await self._store.properties.all(serial) if not p.protected}
        body: dict[str, Any] = {"props": props}
        if delta is not None:
            body["delta"] = delta
        try:
            await self._publisher.publish(
                device_topic(serial, Channel.PROP), json.dumps(body).encode(), qos=1, retain=True
            )
        except Exception:
            log.exception("publishing the properties of %s failed", serial)

    async def forget(self, serial: str) -> None:
        """A deleted device leaves no retained properties behind."""
        await self._publisher.publish(device_topic(serial, Channel.PROP), b"", qos=0, retain=True)


def _wire(prop: Property) -> dict[str, Any]:
    return {"value": prop.value, "version": prop.version}
