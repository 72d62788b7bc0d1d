"""`bridge.v1.ids`: the UUID strings of `X-Request-ID` and `message_id` are uuid's own text."""

from __future__ import annotations

import uuid

from bridge.v1.commands import _MESSAGE_IDS, message_id
from bridge.v1.ids import uuid4_text, uuid5_text


def test_uuid5_text_is_uuid5() -> None:
    for name in ["", "a", "cmd-0123456789abcdef", "ünïcode ✓", "x" * 300]:
        assert uuid5_text(uuid.NAMESPACE_URL, name) == str(uuid.uuid5(uuid.NAMESPACE_URL, name))
        assert message_id(name) == str(uuid.uuid5(_MESSAGE_IDS, name))


def test_uuid4_text_is_a_random_version_4_uuid() -> None:
    texts = {uuid4_text() for _ in range(1000)}
    assert len(texts) == 1000
    for text in texts:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
