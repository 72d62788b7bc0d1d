"""Device message decoding and validation against the JSON Schemas in `schemas/`.

`schemas/` is the one source of truth: the validators are built from those files at run time,
and `/api/protocol` is generated from them. Telemetry and status take a fast path (their schema
is "an object of scalars without the reserved keys"), property-tested to agree with jsonschema;
anything the fast path does not accept is handed to jsonschema for the precise error message.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from nxg_mqtt.errors import CommandRejected, PayloadRejected, ValidationError
from nxg_mqtt.protocol import DEVICE_DATA, MessageType, RejectReason, Schema

_PACKAGE = Path(__file__).resolve().parent
# installed from a wheel: inside the package; in a checkout (editable install): `schemas/` at the top
SCHEMA_DIR = _PACKAGE / "schemas" if (_PACKAGE / "schemas").is_dir() else _PACKAGE.parent / "schemas"
KINDS = tuple(kind.value for kind in Schema)
_SCALARS = (int, float, str, bool, type(None))
_RESERVED = frozenset({"t", "serial"})

# Limits every surface shares (device topics, both WebSockets, REST bodies): JSON deeper than
# this, or a number SQLite and most firmware cannot hold, is refused before it reaches anything
# recursive (the C decoder raises RecursionError near 1,000 levels; json.dumps and jsonschema too).
# A fixed protocol limit, not a setting: firmware must be able to rely on it everywhere.
MAX_JSON_DEPTH = 32
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_FLOAT_MAX = sys.float_info.max
_INT_MAX_DIGITS = 20  # longer literals cannot be in range: refused before int() converts them
_STRINGS = re.compile(r'"(?:[^"\\]++|\\.)*+"')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]++")


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
    value = load_json(text, what="payload")
    if not isinstance(value, dict):
        raise reject(Reason.NOT_OBJECT, f"payload must be a JSON object, got {type(value).__name__}")
    return value


def load_json(text: str | bytes, *, what: str = "payload") -> Any:
    """The one JSON decoder of every surface: RFC 8259 JSON within MAX_JSON_DEPTH levels and
    64-bit integers, finite numbers only. PayloadRejected (`not_json`, `too_deep`, `number_range`)
    otherwise; `what` names the thing in the message ("payload", "frame", "body")."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise reject(Reason.NOT_UTF8, f"{what} is not valid UTF-8 (byte {exc.start})") from None
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise reject(Reason.TOO_DEEP, f"{what} nests {depth} levels deep; the limit is {MAX_JSON_DEPTH}")
    try:
        return _DECODER.decode(text)
    except _OutOfRange as exc:
        raise reject(Reason.NUMBER_RANGE, f"{what} has a number out of range: {exc}") from None
    except json.JSONDecodeError as exc:
        raise reject(Reason.NOT_JSON, f"{what} is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except (ValueError, RecursionError) as exc:  # NaN/Infinity literals; RecursionError cannot pass json_depth
        raise reject(Reason.NOT_JSON, f"{what} is not valid JSON: {exc}") from None


def json_depth(text: str) -> int:
    """How deeply the arrays and objects of a JSON text nest, brackets in strings not counted:
    exact above MAX_JSON_DEPTH; within it, only "at most MAX_JSON_DEPTH" is promised.

    Cheap on the hot path: a text with no more brackets than the limit cannot nest deeper, and is
    not scanned. Malformed text gets a number too; the decoder then says what is wrong with it.
    """
    if text.count("{") + text.count("[") <= MAX_JSON_DEPTH:
        return 1 if "{" in text or "[" in text else 0
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    depth = deepest = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


class _OutOfRange(ValueError):
    pass


def _bounded_int(literal: str) -> int:
    if len(literal) < 19:  # the hot path: cannot be out of range
        return int(literal)
    if len(literal.lstrip("-")) <= _INT_MAX_DIGITS:
        value = int(literal)
        if INT_MIN <= value <= INT_MAX:
            return value
    shown = literal if len(literal) <= 24 else f"{literal[:20]}… ({len(literal)} digits)"
    raise _OutOfRange(f"{shown} is outside the 64-bit integer range (-2^63 … 2^63-1)")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if -_FLOAT_MAX <= value <= _FLOAT_MAX:
        return value
    shown = literal if len(literal) <= 24 else f"{literal[:20]}…"
    raise _OutOfRange(f"{shown} does not fit a 64-bit float")


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's parser accepts them unless told otherwise
    raise ValueError(f"{name} is not a JSON value")


# built once: json.loads with any keyword builds a decoder and its scanner on every call (that
# costs more than the number hooks do)
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_int=_bounded_int, parse_float=_finite_float)

# `json.dumps(value, separators=(",", ":"))`, the same text: `dumps` builds a new JSONEncoder on
# every call that passes any keyword, which is half its cost for the small bodies of the command
# path (a command, its stored params, a hub message); this encoder is built once
compact = json.JSONEncoder(separators=(",", ":")).encode


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


def plain_command_request(request: dict[str, Any], *, with_serial: bool = False) -> bool:
    """The command request schema checked by hand; True means jsonschema would accept it too
    (jsonschema cost more than the rest of a command's checks; a refusal still goes through it
    for its message)."""
    action = request.get("action")
    if not isinstance(action, str) or not 0 < len(action) <= 128 or action[0] == "_":
        return False
    if "serial" in request:
        if not isinstance(request["serial"], str):
            return False
    elif with_serial:
        return False
    if "target" in request:
        target = request["target"]
        if not isinstance(target, str) or not 0 < len(target) <= 128:
            return False
    if "params" in request and not isinstance(request["params"], dict):
        return False
    if "ref" in request:
        ref = request["ref"]
        if isinstance(ref, bool) or not isinstance(ref, (str, int, float)):
            return False
    return True


def plain_ack(value: dict[str, Any]) -> bool:
    """The ack schema checked by hand; True means jsonschema would accept it too."""
    command_id = value.get("id")
    if not isinstance(command_id, str) or not 0 < len(command_id) <= 64 or not isinstance(value.get("ok"), bool):
        return False
    if "t" in value and not (isinstance(value["t"], str) and value["t"] == "ack"):
        return False
    return "error" not in value or isinstance(value["error"], str)


def check_command_request(request: dict[str, Any], *, with_serial: bool = False) -> None:
    """The one validation of a command request (`/ws/app`, the CLI, REST, `nxg/{S}/cmd/req`):
    CommandRejected `RESTRICTED_ACTION` (403) for an action starting with `_`, else `INVALID_COMMAND`
    with the schema's message. `with_serial`: the request names its device (`/ws/app`)."""
    if plain_command_request(request, with_serial=with_serial):
        return
    kind = "command_request_with_serial" if with_serial else Schema.COMMAND_REQUEST.value
    error = best_match(_command_validator(kind).iter_errors(request))
    if error is None:
        return
    action = request.get("action")
    if isinstance(action, str) and action.startswith("_"):
        raise CommandRejected("RESTRICTED_ACTION", "actions starting with '_' are protocol-internal")
    where = "/".join(str(p) for p in error.absolute_path)
    raise ValidationError(f"invalid command: {where + ': ' if where else ''}{error.message}", code="INVALID_COMMAND")


@cache
def _command_validator(kind: str) -> jsonschema.protocols.Validator:
    if kind == Schema.COMMAND_REQUEST:
        return _validator(kind)
    document = schema(Schema.COMMAND_REQUEST)
    document = {**document, "required": [*document["required"], "serial"]}
    validator: jsonschema.protocols.Validator = jsonschema.validators.validator_for(document)(document)
    return validator


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
