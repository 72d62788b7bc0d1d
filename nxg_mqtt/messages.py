"""Device message decoding and validation against the JSON Schemas in `schemas/`.

`schemas/` is the one source of truth: the validators are built from those files at run time,
and `/api/protocol` is generated from them. Telemetry and status take a fast path (their schema
is "an object of scalars without the reserved keys"), property-tested to agree with jsonschema;
anything the fast path does not accept is handed to jsonschema for the precise error message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from nxg_mqtt.errors import PayloadRejected
from nxg_mqtt.protocol import DEVICE_DATA, MessageType, RejectReason, Schema

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
KINDS = tuple(kind.value for kind in Schema)
_SCALARS = (int, float, str, bool, type(None))
_RESERVED = frozenset({"t", "serial"})


Reason = RejectReason  # the name this module's callers use


def reject(reason: str, message: str) -> PayloadRejected:
    return PayloadRejected(message, code=reason)


@cache
def schema(kind: str) -> dict[str, Any]:
    with (SCHEMA_DIR / f"{kind}.json").open(encoding="utf-8") as fh:
        loaded: dict[str, Any] = json.load(fh)
    return loaded


@cache
def _validator(kind: str) -> jsonschema.protocols.Validator:
    document = schema(kind)
    cls = jsonschema.validators.validator_for(document)
    cls.check_schema(document)
    validator: jsonschema.protocols.Validator = cls(document)
    return validator


def all_schemas() -> dict[str, dict[str, Any]]:
    return {kind: schema(kind) for kind in KINDS}


def decode_object(raw: bytes, max_bytes: int) -> dict[str, Any]:
    """Bytes → JSON object, or PayloadRejected with the reason and a message a developer can act on."""
    if len(raw) > max_bytes:
        raise reject(Reason.TOO_LARGE, f"payload of {len(raw)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise reject(Reason.NOT_UTF8, f"payload is not valid UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        if not isinstance(exc, json.JSONDecodeError):
            raise reject(Reason.NOT_JSON, f"payload is not valid JSON: {exc}") from None
        raise reject(Reason.NOT_JSON, f"payload is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(value, dict):
        raise reject(Reason.NOT_OBJECT, f"payload must be a JSON object, got {type(value).__name__}")
    return value


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's parser accepts them unless told otherwise
    raise ValueError(f"{name} is not a JSON value")


def fast_scalar_object(value: dict[str, Any]) -> bool:
    """The telemetry/status schema, checked by hand; True means jsonschema would accept it too."""
    for key, item in value.items():
        if key in _RESERVED:
            return False
        if key == "ts":
            if isinstance(item, bool) or not isinstance(item, (int, float)) or item < 0:
                return False
        elif not isinstance(item, _SCALARS):
            return False
    return True


def schema_errors(kind: str, value: Any) -> str | None:
    """None if valid, else the most relevant validation message."""
    error = best_match(_validator(kind).iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message


def validate(kind: str, value: dict[str, Any]) -> None:
    if kind in DEVICE_DATA:
        if kind != MessageType.EVENT and fast_scalar_object(value):
            return
        reserved = sorted(_RESERVED & value.keys())
        if reserved:
            raise reject(Reason.SCHEMA, f"{kind} may not use the reserved key {reserved[0]!r}")
    problem = schema_errors(kind, value)
    if problem is not None:
        raise reject(Reason.SCHEMA, f"{kind} does not match its schema: {problem}")


@dataclass(frozen=True, slots=True)
class DeviceMessage:
    """A validated device payload: its fields without `ts`, and the device's `ts` if it sent one."""

    kind: str
    fields: dict[str, Any]
    device_ts: int | None


def parse_device_message(kind: str, raw: bytes, max_bytes: int) -> DeviceMessage:
    value = decode_object(raw, max_bytes)
    return device_message(kind, value)


def device_message(kind: str, value: dict[str, Any]) -> DeviceMessage:
    validate(kind, value)
    device_ts = value.pop("ts", None) if kind in DEVICE_DATA else None
    return DeviceMessage(kind, value, int(device_ts) if device_ts is not None else None)
