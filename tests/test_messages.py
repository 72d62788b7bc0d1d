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


@given(JSON)
def test_any_json_is_accepted_or_rejected_with_a_reason(value: Any) -> None:
    raw = json.dumps(value).encode()
    for kind in ("telemetry", "status", "event"):
        try:
            messages.parse_device_message(kind, raw, 16 * 1024)
        except PayloadRejected as exc:
            assert exc.code in {"not_object", "schema", "too_large"}
            assert exc.message


@given(st.binary(max_size=40))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    try:
        messages.parse_device_message("telemetry", raw, 16 * 1024)
    except PayloadRejected as exc:
        assert exc.code in {"not_utf8", "not_json", "not_object", "schema"}


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
