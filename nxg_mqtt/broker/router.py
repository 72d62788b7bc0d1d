"""The subscription index: which subscribers, at which QoS, receive a message on a topic.

Filters without wildcards live in a dict keyed by the filter itself, so a lookup costs the same
with five or five thousand device subscriptions. Filters with `+` or `#` live in a trie walked
level by level. Both follow `nxg_mqtt.topics.matches` (property-tested against it), including
the rule that a filter starting with a wildcard never matches a topic starting with `$`.
A subscriber matched by several overlapping filters gets one entry at the highest granted QoS.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class _Node(Generic[K]):
    __slots__ = ("children", "here", "rest")

    def __init__(self) -> None:
        self.children: dict[str, _Node[K]] = {}  # `+` is a child like any other level
        self.here: dict[K, int] = {}  # filters ending at this node
        self.rest: dict[K, int] = {}  # filters ending with `#` below this node

    def empty(self) -> bool:
        return not (self.children or self.here or self.rest)


class Router(Generic[K]):
    """Subscription index keyed by subscriber (any hashable, e.g. a session)."""

    __slots__ = ("_exact", "_root", "_wildcards")

    def __init__(self) -> None:
        self._exact: dict[str, dict[K, int]] = {}
        self._root: _Node[K] = _Node()
        self._wildcards = 0

    def __len__(self) -> int:
        return sum(len(v) for v in self._exact.values()) + self._wildcards

    def add(self, topic_filter: str, subscriber: K, qos: int) -> None:
        """Add or replace (MQTT-3.8.4-3) the subscription of `subscriber` to `topic_filter`."""
        if "+" not in topic_filter and "#" not in topic_filter:
            self._exact.setdefault(topic_filter, {})[subscriber] = qos
            return
        node = self._root
        levels = topic_filter.split("/")
        if levels[-1] == "#":
            levels.pop()
            for level in levels:
                node = node.children.setdefault(level, _Node())
            table = node.rest
        else:
            for level in levels:
                node = node.children.setdefault(level, _Node())
            table = node.here
        if subscriber not in table:
            self._wildcards += 1
        table[subscriber] = qos

    def remove(self, topic_filter: str, subscriber: K) -> bool:
        """Remove one subscription; True if it existed."""
        if "+" not in topic_filter and "#" not in topic_filter:
            subs = self._exact.get(topic_filter)
            if subs is None or subs.pop(subscriber, None) is None:
                return False
            if not subs:
                del self._exact[topic_filter]
            return True
        levels = topic_filter.split("/")
        multi = levels[-1] == "#"
        if multi:
            levels.pop()
        path = [self._root]
        for level in levels:
            child = path[-1].children.get(level)
            if child is None:
                return False
            path.append(child)
        table = path[-1].rest if multi else path[-1].here
        if table.pop(subscriber, None) is None:
            return False
        self._wildcards -= 1
        for depth in range(len(levels), 0, -1):  # prune empty branches so the trie stays small
            if not path[depth].empty():
                break
            del path[depth - 1].children[levels[depth - 1]]
        return True

    def match(self, topic: str) -> dict[K, int]:
        """Subscribers whose filters match `topic`, each with its highest granted QoS."""
        exact = self._exact.get(topic)
        if not self._wildcards:
            return dict(exact) if exact else {}
        result: dict[K, int] = dict(exact) if exact else {}
        levels = topic.split("/")
        last = len(levels)
        root = self._root
        # (node, index of the next level to match)
        stack: list[tuple[_Node[K], int]] = []
        if topic.startswith("$"):
            child = root.children.get(levels[0])
            if child is not None:
                stack.append((child, 1))
        else:
            stack.append((root, 0))
        while stack:
            node, index = stack.pop()
            if node.rest:
                _merge(result, node.rest)
            if index == last:
                if node.here:
                    _merge(result, node.here)
                continue
            level = levels[index]
            child = node.children.get(level)
            if child is not None:
                stack.append((child, index + 1))
            if level != "+":
                child = node.children.get("+")
                if child is not None:
                    stack.append((child, index + 1))
        return result


def _merge(result: dict[K, int], table: dict[K, int]) -> None:
    for subscriber, qos in table.items():
        if result.get(subscriber, -1) < qos:
            result[subscriber] = qos
