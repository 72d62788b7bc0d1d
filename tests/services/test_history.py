"""History paging: following `next_before` from the first page to the last returns every stored
message exactly once, newest first, however many share a millisecond (`before` is a ts, so a page
that ended inside a millisecond lost the rest of it: a CI run saw two messages in one ms)."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from nxg_mqtt.models import HistoryEntry
from nxg_mqtt.protocol import MessageType
from nxg_mqtt.services.devices import DeviceService
from nxg_mqtt.services.history import HistoryService, history_query
from nxg_mqtt.settings import Settings
from nxg_mqtt.store import open_store


async def page_through(timestamps: list[int], limit: int, directory: Path) -> list[list[dict[str, object]]]:
    async with open_store(directory / "nxg.sqlite3") as store:
        entries = [
            HistoryEntry(f"d{n % 3}", MessageType.TELEMETRY, ts, {"t": "telemetry", "n": n})
            for n, ts in enumerate(timestamps)
        ]
        await store.history_writer.write(entries, {})
        history = HistoryService(store, DeviceService(store, Settings()))
        pages: list[list[dict[str, object]]] = []
        before: int | None = None
        while True:
            page = await history.query(history_query(type_="telemetry", limit=limit, before=before))
            pages.append(page.messages)
            if page.next_before is None:
                return pages
            assert page.messages and page.next_before == page.messages[-1]["ts"]
            assert len(pages) <= len(timestamps) + 1  # every page but the last holds at least one message
            before = page.next_before


@settings(max_examples=60, deadline=None)
@given(timestamps=st.lists(st.integers(1, 6), max_size=25), limit=st.integers(1, 6))
def test_paging_returns_every_message_once_newest_first(timestamps: list[int], limit: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        pages = asyncio.run(page_through(timestamps, limit, Path(directory)))
    seen = [m for page in pages for m in page]
    assert sorted(m["n"] for m in seen) == list(range(len(timestamps)))  # type: ignore[type-var]
    stamps = [m["ts"] for m in seen]
    assert stamps == sorted(stamps, reverse=True)  # type: ignore[type-var]
    for page in pages:
        # a page is over `limit` only when that many messages share its one millisecond
        assert len(page) <= limit or len({m["ts"] for m in page}) == 1
    for newer, older in itertools.pairwise(pages):
        # no millisecond is split across two pages
        assert not older or newer[-1]["ts"] != older[0]["ts"]


def test_a_millisecond_is_never_split() -> None:
    # 5 and 4 then three in ms 3: a page of two ends before ms 3 rather than inside it
    with tempfile.TemporaryDirectory() as directory:
        pages = asyncio.run(page_through([1, 3, 3, 3, 4, 5], 2, Path(directory)))
    assert [[m["ts"] for m in page] for page in pages] == [[5, 4], [3, 3, 3], [1]]
    with tempfile.TemporaryDirectory() as directory:
        pages = asyncio.run(page_through([7, 7, 7], 3, Path(directory)))
    assert [[m["ts"] for m in page] for page in pages] == [[7, 7, 7]]  # all of it, and no empty next page
