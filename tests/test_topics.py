"""The one topic matcher, property-tested against a regular-expression reading of MQTT §4.7."""

from __future__ import annotations

import re

from hypothesis import assume, given
from hypothesis import strategies as st

from nxg_mqtt.topics import Channel, matches, parse_device_topic, valid_topic_filter

LEVEL = st.sampled_from(["a", "b", "sport", "", "$SYS", "x1", "TopicA"])
TOPIC = st.lists(LEVEL, min_size=1, max_size=5).map("/".join)
FILTER_LEVEL = st.sampled_from(["a", "b", "sport", "", "+", "$SYS", "TopicA"])


@st.composite
def filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(FILTER_LEVEL, min_size=1, max_size=5))
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels)


def reference(topic_filter: str, topic: str) -> bool:
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    pattern = ""
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if level == "#":
            # `a/#` matches `a` as well as everything below it
            pattern = pattern[:-1] + "(/.*)?" if index else ".*"
            break
        pattern += "[^/]*" if level == "+" else re.escape(level)
        if index < len(levels) - 1:
            pattern += "/"
    return re.fullmatch(pattern, topic) is not None


@given(filters(), TOPIC)
def test_matcher_agrees_with_the_reference(topic_filter: str, topic: str) -> None:
    assume(topic_filter and topic)  # zero-length names and filters are not MQTT
    assert valid_topic_filter(topic_filter)
    assert matches(topic_filter, topic) == reference(topic_filter, topic)


@given(TOPIC)
def test_a_topic_matches_itself_and_hash(topic: str) -> None:
    assume(topic)
    assert matches(topic, topic)
    assert matches("#", topic) == (not topic.startswith("$"))


def test_spec_examples() -> None:
    assert matches("sport/#", "sport")
    assert matches("sport/tennis/+", "sport/tennis/player1")
    assert not matches("sport/tennis/+", "sport/tennis/player1/ranking")
    assert matches("+/+", "/finance")
    assert not matches("+", "/finance")
    assert not matches("+/monitor/Clients", "$SYS/monitor/Clients")
    assert matches("$SYS/#", "$SYS/monitor/Clients")
    assert not valid_topic_filter("sport/tennis#")
    assert not valid_topic_filter("sport/#/ranking")
    assert not valid_topic_filter("sport+")


def test_device_topics() -> None:
    parsed = parse_device_topic("nxg/dev-1/cmd/req")
    assert parsed is not None and parsed.channel is Channel.CMD_REQ and parsed.serial == "dev-1"
    assert parse_device_topic("nxg/pair/x") is None
    assert parse_device_topic("nxg/dev-1/unknown") is None
    assert parse_device_topic("other/dev-1/telemetry") is None
