"""The vocabulary module: the stamp a broker appends, and the one app-message function."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from nxg_mqtt.models import HistoryEntry
from nxg_mqtt.protocol import SERVER_TS, MessageType, Schema, app_message, iso_ts, realtime_message, stamp
from nxg_mqtt.topics import Channel

SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
OBJECTS = st.dictionaries(st.text(max_size=6), SCALARS, max_size=5)
SPACE = st.sampled_from(["", " ", "\n", " \t\r\n"])


@given(OBJECTS, st.integers(min_value=0, max_value=2**53), SPACE, st.booleans())
def test_stamp_appends_server_ts_to_any_json_object(value: dict[str, Any], ts: int, space: str, indent: bool) -> None:
    raw = (space + json.dumps(value, indent=2 if indent else None) + space).encode()
    stamped = json.loads(stamp(raw, ts))
    assert stamped == {**value, SERVER_TS: ts}


def test_stamp_keeps_the_device_bytes_and_wins_over_a_device_copy() -> None:
    raw = b'{"temp":1,"ts":5,"server_ts":9}'
    stamped = stamp(raw, 7)
    assert stamped.startswith(raw[:-1]) and json.loads(stamped)[SERVER_TS] == 7


def test_app_message_is_flat_and_names_the_device_ts() -> None:
    fields = {"temp": 1, "t": "telemetry", "serial": "X", "ts": 3, SERVER_TS: 4}
    assert app_message("S1", MessageType.TELEMETRY, 10, fields, 2) == {
        "t": "telemetry",
        "serial": "S1",
        "ts": 10,
        "temp": 1,
        "device_ts": 2,
    }
    assert app_message("S1", MessageType.PRESENCE, 10, {"t": "device_online"}) == {
        "t": "device_online",
        "serial": "S1",
        "ts": 10,
    }


def test_history_entries_use_the_same_function() -> None:
    entry = HistoryEntry("S1", MessageType.EVENT, 10, {"t": "event", "type": "x"}, device_ts=3)
    assert entry.app_message() == app_message("S1", MessageType.EVENT, 10, {"type": "x"}, 3)


def test_topic_leaves_and_schemas_share_the_kind_names() -> None:
    for kind in MessageType:
        assert Channel(kind.value).value == Schema(kind.value).value == kind.value


def test_iso_ts_is_seed_001s_form() -> None:
    assert iso_ts(1765967400000) == "2025-12-17T10:30:00.000Z"
    assert iso_ts(1765967400007) == "2025-12-17T10:30:00.007Z"
    assert iso_ts(0) == "1970-01-01T00:00:00.000Z"


def test_realtime_message_from_each_app_message() -> None:
    ts = 1765967400123
    telemetry = app_message("ABC123", MessageType.TELEMETRY, ts, {"lat": 1.5}, device_ts=5)
    assert realtime_message(telemetry) == {
        "type": "device_data",
        "hardwareId": "ABC123",
        "payload": {"lat": 1.5},
        "timestamp": "2025-12-17T10:30:00.123Z",
    }
    offline = app_message("ABC123", "device_offline", ts, {})
    assert realtime_message(offline) == {
        "type": "device_status",
        "hardwareId": "ABC123",
        "payload": {"is_online": False},
        "timestamp": "2025-12-17T10:30:00.123Z",
    }
    event = app_message("ABC123", MessageType.EVENT, ts, {"type": "device_locked", "source": "key"})
    assert realtime_message(event) == {
        "type": "device_locked",
        "hardwareId": "ABC123",
        "eventId": f"evt_{ts}",
        "source": "key",
        "timestamp": "2025-12-17T10:30:00.123Z",
    }
    assert realtime_message(app_message("ABC123", MessageType.EVENT, ts, {"type": "door"})) is None
    assert realtime_message(app_message("ABC123", MessageType.ACK, ts, {"id": "c", "ok": True})) is None
