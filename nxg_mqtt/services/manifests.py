"""Manifests: what a device can do, and the check every command passes before it is stored.

A manifest (PROTOCOL §4) is validated against `schemas/manifest.json`, and every `paramSchema` /
`outputSchema` in it must itself be a valid JSON Schema (checked with its metaschema), so a
broken schema is refused when it is set, never discovered when a command arrives. Each change is
stored as a new version (the server numbers them); a device re-sending the manifest in force
(firmware does at every boot) adds no version.

The command path reads only memory: the compiled validators of a device's manifest in force are
cached per (device, version), built once when the manifest is set or first used; a process that
did not set it (the CLI) loads it from the store on first use.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError

from nxg_mqtt import messages
from nxg_mqtt.errors import CommandRejected, ConflictError, NotFoundError, PayloadRejected, ValidationError
from nxg_mqtt.messages import compact
from nxg_mqtt.models import ManifestRecord, now_ms
from nxg_mqtt.protocol import RejectReason, Schema
from nxg_mqtt.services.devices import DeviceService
from nxg_mqtt.services.ingest import IngestService
from nxg_mqtt.services.schema_check import CompiledSchema
from nxg_mqtt.settings import Settings
from nxg_mqtt.store import Store
from nxg_mqtt.topics import Channel

MANIFEST_INVALID = "MANIFEST_INVALID"

# The registry's defaults (GET /api/v1/manifest/capabilities and /types): the common device
# classes, extended by every action a device manifest declares.
DEFAULT_CAPABILITIES: tuple[tuple[str, str, str], ...] = (
    ("light_on", "light", "Turn light on"),
    ("light_off", "light", "Turn light off"),
    ("light_brightness", "light", "Set light brightness"),
    ("temp_set", "climate", "Set target temperature"),
    ("mode_auto", "climate", "Switch climate control to automatic"),
    ("lock", "lock", "Lock"),
    ("unlock", "lock", "Unlock"),
    ("relay_on", "relay", "Close the relay"),
    ("relay_off", "relay", "Open the relay"),
    ("sensor_read", "sensor", "Read the sensor now"),
)


def schema_errors(validator: jsonschema.protocols.Validator | CompiledSchema, value: Any) -> list[dict[str, str]]:
    """Every error as `{"path": JSON path, "message"}`, in a stable order. A `CompiledSchema`'s
    predicate answers a valid value without jsonschema; anything else is jsonschema's to report."""
    if isinstance(validator, CompiledSchema):
        if validator.surely_valid(value):
            return []
        validator = validator.validator
    errors = sorted(validator.iter_errors(value), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [{"path": e.json_path, "message": e.message} for e in errors]


def _compile(document: dict[str, Any]) -> CompiledSchema:
    cls = jsonschema.validators.validator_for(document, default=jsonschema.Draft202012Validator)
    validator: jsonschema.protocols.Validator = cls(document)
    return CompiledSchema.of(validator)


@dataclass(frozen=True, slots=True)
class Capability:
    action: str
    safety_class: str
    targets: tuple[str, ...] | None
    supports_dry_run: bool
    params: CompiledSchema | None
    output: CompiledSchema | None

    @property
    def critical(self) -> bool:
        return self.safety_class == "critical"


@dataclass(frozen=True, slots=True)
class Compiled:
    version: int
    capabilities: dict[str, Capability]


def check_manifest(value: Any) -> list[dict[str, Any]]:
    """The capabilities of a valid manifest (normalised: `safetyClass` and `supportsDryRun`
    filled in); ValidationError `MANIFEST_INVALID` with every problem in `details` otherwise."""
    if not isinstance(value, dict):
        raise ValidationError("a manifest is a JSON object", code=MANIFEST_INVALID)
    problems = schema_errors(_manifest_validator(), value)
    if not problems:
        seen: set[str] = set()
        for index, capability in enumerate(value["capabilities"]):
            action = capability["action"]
            if action.startswith("_"):
                problems.append(
                    {
                        "path": f"$.capabilities[{index}].action",
                        "message": "actions starting with '_' are protocol-internal",
                    }
                )
            if action in seen:
                problems.append({"path": f"$.capabilities[{index}].action", "message": f"{action!r} is declared twice"})
            seen.add(action)
            for key in ("paramSchema", "outputSchema"):
                if key in capability:
                    document = capability[key]
                    try:
                        jsonschema.validators.validator_for(
                            document, default=jsonschema.Draft202012Validator
                        ).check_schema(document)
                    except SchemaError as exc:
                        where = exc.json_path.replace("$", f"$.capabilities[{index}].{key}", 1)
                        problems.append({"path": where, "message": f"not a valid JSON Schema: {exc.message}"})
    if problems:
        first = problems[0]
        raise ValidationError(
            f"invalid manifest: {first['path']}: {first['message']}", code=MANIFEST_INVALID, details=problems
        )
    return [
        {**c, "safetyClass": c.get("safetyClass", "normal"), "supportsDryRun": c.get("supportsDryRun", False)}
        for c in value["capabilities"]
    ]


_MANIFEST_VALIDATOR: list[CompiledSchema] = []


def _manifest_validator() -> CompiledSchema:
    if not _MANIFEST_VALIDATOR:
        _MANIFEST_VALIDATOR.append(_compile(messages.schema(Schema.MANIFEST)))
    return _MANIFEST_VALIDATOR[0]


def compile_manifest(record: ManifestRecord) -> Compiled:
    capabilities = {}
    for c in record.capabilities:
        capabilities[c["action"]] = Capability(
            action=c["action"],
            safety_class=c.get("safetyClass", "normal"),
            targets=tuple(c["targets"]) if "targets" in c else None,
            supports_dry_run=bool(c.get("supportsDryRun", False)),
            params=_compile(c["paramSchema"]) if "paramSchema" in c else None,
            output=_compile(c["outputSchema"]) if "outputSchema" in c else None,
        )
    return Compiled(record.version, capabilities)


class ManifestService:
    def __init__(self, store: Store, settings: Settings, devices: DeviceService, ingest: IngestService) -> None:
        self._store = store
        self._settings = settings
        self._devices = devices
        self._ingest = ingest
        self._compiled: dict[str, Compiled | None] = {}  # serial (lower case) → manifest in force

    # ---- setting ---------------------------------------------------------------------------------

    async def put(self, serial: str, value: Any, *, source: str = "api", create: bool | None = None) -> ManifestRecord:
        """Store a new version. `create=True` (POST): 409 if one exists; False (PUT): 404 MANIFEST_NOT_FOUND
        if none does; None (the device): either. Unchanged capabilities add no version."""
        device = await self._devices.get(serial)
        raw = compact(value).encode() if not isinstance(value, bytes) else value
        if len(raw) > self._settings.max_manifest_bytes:
            raise ValidationError(
                f"manifest of {len(raw)} bytes exceeds the limit of {self._settings.max_manifest_bytes} bytes",
                code=MANIFEST_INVALID,
            )
        capabilities = check_manifest(value)
        current = await self._store.manifests.latest(device.serial)
        if create is True and current is not None:
            raise ConflictError(
                f"device {device.serial} already has a manifest (version {current.version}); PUT replaces it"
            )
        if create is False and current is None:
            raise NotFoundError(
                f"device {device.serial} has no manifest; POST registers the first", code="MANIFEST_NOT_FOUND"
            )
        if current is not None and current.capabilities == capabilities and source == "device":
            return current
        ts = now_ms()
        version = await self._store.manifests.add(device.serial, capabilities, source, ts)
        record = ManifestRecord(device.serial, version, capabilities, source, ts)
        self._compiled[device.serial.lower()] = compile_manifest(record)
        return record

    async def from_device(self, serial: str, raw: bytes) -> ManifestRecord | None:
        """A manifest a device published (MQTT or `/ws/gateway`); a bad one is dropped and recorded
        as a Warning event (PayloadRejected re-raised), like any bad device payload."""

        def parsed() -> Any:
            value = messages.decode_object(raw, self._settings.max_manifest_bytes)
            try:
                check_manifest(value)
            except ValidationError as exc:
                raise PayloadRejected(exc.message, code=RejectReason.SCHEMA, details=exc.details) from None
            return value

        value = self._ingest.validated(serial, Channel.MANIFEST, parsed)
        return await self.put(serial, value, source="device")

    # ---- reading ---------------------------------------------------------------------------------

    async def get(self, serial: str, version: int | None = None) -> ManifestRecord:
        device = await self._devices.get(serial)
        record = (
            await self._store.manifests.latest(device.serial)
            if version is None
            else await self._store.manifests.version(device.serial, version)
        )
        if record is None:
            which = "no manifest" if version is None else f"no manifest version {version}"
            raise NotFoundError(f"device {device.serial} has {which}", code="MANIFEST_NOT_FOUND")
        return record

    async def versions(self, serial: str) -> list[int]:
        device = await self._devices.get(serial)
        return await self._store.manifests.versions(device.serial)

    async def compiled(self, serial: str) -> Compiled | None:
        key = serial.lower()
        if key not in self._compiled:
            record = await self._store.manifests.latest(serial)
            self._compiled[key] = compile_manifest(record) if record is not None else None
        return self._compiled[key]

    def forget(self, serial: str) -> None:
        self._compiled.pop(serial.lower(), None)

    async def registry(self, within: Collection[str] | None = None) -> list[dict[str, Any]]:
        """The capability registry: the defaults, then every action a device manifest declares
        (of the devices `within` only, when given: a tenant's)."""
        allowed = None if within is None else {s.lower() for s in within}
        entries: dict[str, dict[str, Any]] = {}
        for action, category, description in DEFAULT_CAPABILITIES:
            entries[action] = {
                "action": action,
                "description": description,
                "category": category,
                "safetyClass": "normal",
            }
        for record in await self._store.manifests.all_latest():
            if allowed is not None and record.serial.lower() not in allowed:
                continue
            for c in record.capabilities:
                if c["action"] not in entries:
                    entries[c["action"]] = {
                        "action": c["action"],
                        "description": c.get("description"),
                        "category": c.get("category"),
                        "safetyClass": c.get("safetyClass", "normal"),
                    }
        return [{"id": i, **entry} for i, entry in enumerate(entries.values(), start=1)]

    async def types(self, within: Collection[str] | None = None) -> dict[str, list[str]]:
        categories: dict[str, list[str]] = {}
        for entry in await self.registry(within):
            categories.setdefault(entry["category"] or "other", []).append(entry["action"])
        return categories

    # ---- checking commands -------------------------------------------------------------------------

    async def check_command(
        self, serial: str, action: str, target: str | None, params: dict[str, Any]
    ) -> Capability | None:
        """The capability a command uses (None: the device has no manifest and none is required);
        CommandRejected with the PROTOCOL §4 code otherwise."""
        compiled = await self.compiled(serial)
        if compiled is None:
            if self._settings.require_manifest:
                raise CommandRejected("MANIFEST_NOT_FOUND", f"device {serial} has no manifest and one is required")
            return None
        capability = compiled.capabilities.get(action)
        if capability is None:
            raise CommandRejected(
                "ACTION_NOT_IN_MANIFEST",
                f"action {action!r} is not in the manifest of {serial} (version {compiled.version})",
            )
        if capability.targets is not None and target is not None and target not in capability.targets:
            raise CommandRejected(
                "ACTION_NOT_IN_MANIFEST",
                f"target {target!r} is not among the targets of {action!r}: {', '.join(capability.targets)}",
            )
        if capability.params is not None:
            errors = schema_errors(capability.params, params)
            if errors:
                first = errors[0]
                raise CommandRejected(
                    "PARAMS_INVALID", f"params of {action!r}: {first['path']}: {first['message']}", errors
                )
        return capability

    async def check_result(self, serial: str, action: str, result: Any) -> str | None:
        """Why an ack's `result` breaks the action's `outputSchema`; None if it does not (or none exists)."""
        compiled = await self.compiled(serial)
        capability = compiled.capabilities.get(action) if compiled is not None else None
        if capability is None or capability.output is None:
            return None
        errors = schema_errors(capability.output, result)
        if not errors:
            return None
        return "result does not match outputSchema: " + "; ".join(f"{e['path']}: {e['message']}" for e in errors)
