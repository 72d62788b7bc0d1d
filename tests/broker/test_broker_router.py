"""The subscription index agrees with `topics.matches` and keeps one entry per subscriber."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nxg_mqtt.broker.router import Router
from nxg_mqtt.topics import matches, valid_topic_filter

level = st.sampled_from(["a", "b", "", "$SYS", "$x", "nxg", "c d"])
topics = st.lists(level, min_size=1, max_size=4).map("/".join).filter(bool)
filter_level = st.sampled_from(["a", "b", "", "+", "$SYS", "$x", "nxg"])


@st.composite
def filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(filter_level, min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels)


valid_filters = filters().filter(valid_topic_filter)


@settings(max_examples=300)
@given(
    st.lists(st.tuples(valid_filters, st.integers(0, 5), st.integers(0, 2)), max_size=25),
    st.lists(st.tuples(valid_filters, st.integers(0, 5)), max_size=8),
    st.lists(topics, min_size=1, max_size=10),
)
def test_router_equals_brute_force(
    subs: list[tuple[str, int, int]], removals: list[tuple[str, int]], probe: list[str]
) -> None:
    router: Router[int] = Router()
    table: dict[tuple[str, int], int] = {}
    for topic_filter, who, qos in subs:
        router.add(topic_filter, who, qos)
        table[(topic_filter, who)] = qos
    for topic_filter, who in removals:
        assert router.remove(topic_filter, who) == ((topic_filter, who) in table)
        table.pop((topic_filter, who), None)
    assert len(router) == len(table)
    for topic in probe:
        expected: dict[int, int] = {}
        for (topic_filter, who), qos in table.items():
            if matches(topic_filter, topic):
                expected[who] = max(expected.get(who, -1), qos)
        assert router.match(topic) == expected


def test_overlapping_subscriptions_one_entry_at_highest_qos() -> None:
    router: Router[str] = Router()
    router.add("a/+", "s", 0)
    router.add("a/#", "s", 2)
    router.add("a/b", "s", 1)
    assert router.match("a/b") == {"s": 2}


def test_dollar_topics_not_matched_by_leading_wildcards() -> None:
    router: Router[str] = Router()
    router.add("#", "all", 0)
    router.add("+/info", "plus", 0)
    router.add("$SYS/#", "sys", 0)
    assert router.match("$SYS/info") == {"sys": 0}
    assert router.match("x/info") == {"all": 0, "plus": 0}


def test_removal_prunes_the_trie() -> None:
    router: Router[str] = Router()
    router.add("a/+/c/#", "s", 1)
    assert router.remove("a/+/c/#", "s")
    assert not router.remove("a/+/c/#", "s")
    assert router._root.empty()
    assert len(router) == 0
