"""MQTT topic names and filters: validation, the one matcher, and the `nxg/…` vocabulary.

The matcher follows MQTT 3.1.1 §4.7: `+` matches one level, `#` the rest (including the
parent level itself, so `a/#` matches `a`), and filters starting with a wildcard never match
topics starting with `$`. `$share/{group}/{filter}` is not special here: the broker refuses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from nxg_mqtt.protocol import MessageType

SERIAL_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RESERVED_SERIALS = frozenset({"pair", "bridge"})
PREFIX = "nxg"


class Channel(StrEnum):
    """The per-device topic leaves under `nxg/{serial}/`; a message kind's leaf is its name."""

    TELEMETRY = MessageType.TELEMETRY.value
    STATUS = MessageType.STATUS.value
    EVENT = MessageType.EVENT.value
    MANIFEST = "manifest"
    ACK = MessageType.ACK.value
    CMD = MessageType.CMD.value
    CMD_REQ = "cmd/req"
    CMD_RES = "cmd/res"
    PRESENCE = MessageType.PRESENCE.value
    PROP = "prop"
    PROP_SET = "prop/set"
    PROP_RES = "prop/res"
    HTTP_REQ = "http/req"
    HTTP_RES = "http/res"


# PROTOCOL §2: what a device may publish to and subscribe to, under its own `nxg/{S}/`
DEVICE_PUBLISHES = frozenset(
    {
        Channel.TELEMETRY,
        Channel.STATUS,
        Channel.EVENT,
        Channel.MANIFEST,
        Channel.ACK,
        Channel.PROP_SET,
        Channel.HTTP_RES,
    }
)
DEVICE_SUBSCRIBES = frozenset({Channel.CMD, Channel.PROP, Channel.PROP_RES, Channel.HTTP_REQ})


def valid_topic_name(topic: str) -> bool:
    """A topic a client may PUBLISH to: non-empty, no wildcards, no NUL."""
    return bool(topic) and "+" not in topic and "#" not in topic and "\x00" not in topic


def valid_topic_filter(topic_filter: str) -> bool:
    """A filter a client may SUBSCRIBE to (MQTT-4.7.1-2, 4.7.1-3)."""
    if not topic_filter or "\x00" in topic_filter:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def matches(topic_filter: str, topic: str) -> bool:
    """True if `topic` (a name, no wildcards) matches `topic_filter`."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    if "+" not in topic_filter and "#" not in topic_filter:
        return topic_filter == topic
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A parsed `nxg/{serial}/{channel}` topic."""

    serial: str
    channel: Channel

    def __str__(self) -> str:
        return f"{PREFIX}/{self.serial}/{self.channel.value}"


def device_topic(serial: str, channel: Channel) -> str:
    return f"{PREFIX}/{serial}/{channel.value}"


def pair_request_topic(client_id: str) -> str:
    return f"{PREFIX}/pair/{client_id}/req"


def pair_reply_topic(client_id: str) -> str:
    return f"{PREFIX}/pair/{client_id}"


_CHANNELS = {c.value: c for c in Channel}


def parse_device_topic(topic: str) -> DeviceTopic | None:
    """Parse `nxg/{S}/{channel}`; None for anything else (including pairing topics)."""
    parts = topic.split("/", 2)
    if len(parts) != 3 or parts[0] != PREFIX or parts[1] in RESERVED_SERIALS:
        return None
    channel = _CHANNELS.get(parts[2])
    if channel is None or not SERIAL_RE.match(parts[1]):
        return None
    return DeviceTopic(parts[1], channel)


def parse_pair_request(topic: str) -> str | None:
    """The pairing client id of `nxg/pair/{C}/req`, else None."""
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == PREFIX and parts[1] == "pair" and parts[3] == "req" and parts[2]:
        return parts[2]
    return None


def valid_client_level(client_id: str) -> bool:
    """A pairing client id must be usable as one topic level."""
    return bool(client_id) and not any(ch in client_id for ch in "/+#\x00")
