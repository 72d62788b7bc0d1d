"""Schema validation: the telemetry/status fast path agrees with jsonschema on arbitrary JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nxg_mqtt import messages
from nxg_mqtt.errors import PayloadRejected

SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5)
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)
KEYS = st.sampled_from(["temp", "ts", "t", "serial", "hum", "door1"]) | st.text(max_size=6)


@given(st.dictionaries(KEYS, JSON, max_size=5))
def test_fast_path_agrees_with_jsonschema(value: dict[str, Any]) -> None:
    for kind in ("telemetry", "status"):
        by_schema = messages.schema_errors(kind, value) is None
        if messages.fast_scalar_object(value):
            assert by_schema, f"fast path accepted what {kind}'s schema refuses: {value!r}"
        try:
            messages.validate(kind, dict(value))
            accepted = True
        except PayloadRejected:
            accepted = False
        assert accepted == by_schema


COMMAND_KEYS = st.sampled_from(["action", "serial", "target", "params", "ref", "t", "dry_run"]) | st.text(max_size=4)
COMMAND_VALUES = JSON | st.sampled_from(["light_on", "_reboot", "", "x" * 128, "x" * 129, "l1", "ack", "c_01"])


@given(st.dictionaries(COMMAND_KEYS, COMMAND_VALUES, max_size=6), st.booleans())
def test_command_request_fast_path_agrees_with_jsonschema(value: dict[str, Any], with_serial: bool) -> None:
    kind = "command_request_with_serial" if with_serial else "command_request"
    by_schema = not any(messages._command_validator(kind).iter_errors(value))
    assert messages.plain_command_request(value, with_serial=with_serial) == by_schema, value


ACK_KEYS = st.sampled_from(["t", "id", "ok", "error", "result"]) | st.text(max_size=4)
ACK_VALUES = JSON | st.sampled_from(["ack", "cmd", "c_01", "", "x" * 64, "x" * 65, True, False])


@given(st.dictionaries(ACK_KEYS, ACK_VALUES, max_size=5))
def test_ack_fast_path_agrees_with_jsonschema(value: dict[str, Any]) -> None:
    by_schema = messages.schema_errors("ack", value) is None
    assert messages.plain_ack(value) == by_schema, value


@given(JSON)
def test_any_json_is_accepted_or_rejected_with_a_reason(value: Any) -> None:
    raw = json.dumps(value).encode()
    for kind in ("telemetry", "status", "event"):
        try:
            messages.parse_device_message(kind, raw, 16 * 1024)
        except PayloadRejected as exc:
            # hypothesis' integers are unbounded: beyond 64 bits they are refused
            assert exc.code in {"not_object", "schema", "too_large", "number_range", "too_deep"}
            assert exc.message


@given(st.binary(max_size=40))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    try:
        messages.parse_device_message("telemetry", raw, 16 * 1024)
    except PayloadRejected as exc:
        assert exc.code in {"not_utf8", "not_json", "not_object", "schema", "number_range"}


@pytest.mark.parametrize(
    ("raw", "reason", "fragment"),
    [
        (b'{"temp": NaN}', "not_json", "NaN"),
        (b'{"temp": -Infinity}', "not_json", "Infinity"),
        (b'{"a": [1]}', "schema", "a:"),
        (b'{"t": 1}', "schema", "reserved key 't'"),
        (b'{"serial": "x"}', "schema", "reserved key 'serial'"),
        (b"\xc3\x28", "not_utf8", "UTF-8"),
        (b"17", "not_object", "got int"),
        (b'{"ts": "yesterday"}', "schema", "ts"),
    ],
)
def test_messages_say_what_is_wrong(raw: bytes, reason: str, fragment: str) -> None:
    with pytest.raises(PayloadRejected) as info:
        messages.parse_device_message("telemetry", raw, 1024)
    assert info.value.code == reason
    assert fragment in info.value.message


def test_device_ts_is_split_off() -> None:
    parsed = messages.parse_device_message("telemetry", b'{"temp": 1, "ts": 1700000000000}', 1024)
    assert parsed.fields == {"temp": 1} and parsed.device_ts == 1700000000000


def test_every_schema_is_valid() -> None:
    for kind, document in messages.all_schemas().items():
        assert document["$id"] == f"nxg/{kind}"


# ---- depth and number limits: one decoder for every surface ------------------------------------


def _nest(value: Any, levels: int) -> Any:
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@given(JSON, st.integers(min_value=0, max_value=60), st.text(alphabet='[]{}\\"', max_size=8))
def test_depth_limit_is_exact_and_ignores_brackets_in_strings(leaf: Any, levels: int, noise: str) -> None:
    value = {"s": noise, "v": _nest(leaf, levels)}
    text = json.dumps(value)
    depth = _depth(value)
    if depth > messages.MAX_JSON_DEPTH:
        assert messages.json_depth(text) == depth
    else:  # a shallow text may be answered without a scan: only "within the limit" is promised
        assert messages.json_depth(text) <= messages.MAX_JSON_DEPTH
    try:
        decoded = messages.load_json(text)
    except PayloadRejected as exc:
        assert depth > messages.MAX_JSON_DEPTH or exc.code == "number_range", (exc.code, depth)
        if exc.code == "too_deep":
            assert f"{depth} levels" in exc.message
    else:
        assert depth <= messages.MAX_JSON_DEPTH and decoded == value


@given(st.integers())
def test_integers_outside_64_bits_are_refused(number: int) -> None:
    try:
        assert messages.load_json(f'{{"n": {number}}}') == {"n": number}
        assert messages.INT_MIN <= number <= messages.INT_MAX
    except PayloadRejected as exc:
        assert exc.code == "number_range" and not messages.INT_MIN <= number <= messages.INT_MAX


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_finite_floats_pass(number: float) -> None:
    assert messages.load_json(json.dumps({"n": number})) == {"n": number}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "too_deep"),  # once a RecursionError
        (b'{"a":' * 33 + b"1" + b"}" * 33, "too_deep"),
        (b'{"n": 1e309}', "number_range"),
        (b'{"n": -1e309}', "number_range"),
        (b'{"n": 9223372036854775808}', "number_range"),
        (b'{"n": -9223372036854775809}', "number_range"),
        (b'{"n": ' + b"1" * 10_000 + b"}", "number_range"),  # past int()'s 4,300-digit guard
        (b'{"n": Infinity}', "not_json"),
    ],
)
def test_limits_have_their_reasons(raw: bytes, reason: str) -> None:
    with pytest.raises(PayloadRejected) as info:
        messages.decode_object(raw, 10**6)
    assert info.value.code == reason


def test_limits_themselves_are_accepted() -> None:
    at_limit = b'{"a":' * 31 + b"[]" + b"}" * 31  # 32 levels
    assert messages.json_depth(at_limit.decode() + " " + "[]" * 40) == messages.MAX_JSON_DEPTH  # scanned
    messages.decode_object(at_limit, 10**6)
    edge = messages.decode_object(b'{"a": 9223372036854775807, "b": -9223372036854775808, "c": 1.7e308}', 1024)
    assert edge == {"a": 2**63 - 1, "b": -(2**63), "c": 1.7e308}


@pytest.mark.parametrize("severity", ["Trace", "Debug", "Info", "Warning", "Error", "Critical"])
def test_event_severities_are_seed_003s(severity: str) -> None:
    parsed = messages.parse_device_message("event", json.dumps({"type": "x", "severity": severity}).encode(), 1024)
    assert parsed.fields["severity"] == severity


@pytest.mark.parametrize("severity", ["Information", "info", "WARNING", ""])
def test_other_severities_are_refused(severity: str) -> None:
    with pytest.raises(PayloadRejected) as info:
        messages.parse_device_message("event", json.dumps({"type": "x", "severity": severity}).encode(), 1024)
    assert "severity" in info.value.message


@given(JSON | st.floats())
def test_compact_is_json_dumps_without_spaces(value: Any) -> None:
    assert messages.compact(value) == json.dumps(value, separators=(",", ":"))
