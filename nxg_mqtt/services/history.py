"""History queries: one set of rules for `GET /api/history` and `nxg-mqtt history`.

    query = history_query(serial="S", type_="telemetry", limit="10", before=None)
    page = await core.history.query(query)
    page.public()   # {"messages": [...newest first], "next_before": ts | None}

Both surfaces pass what the user typed (query-string text or CLI arguments, untouched), so a
mistake gets the same message and the same error code on both: ValidationError (REST 400, CLI
exit 1) for a bad type, limit or before; DeviceNotFound (REST 404, CLI exit 1) for an unknown serial.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from nxg_mqtt.errors import DeviceNotFound, ValidationError
from nxg_mqtt.models import HistoryEntry
from nxg_mqtt.protocol import MessageType
from nxg_mqtt.services.devices import DeviceService
from nxg_mqtt.store import Store

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_TS = 2**63 - 1  # SQLite's INTEGER: a larger `before` would overflow the query
_INTEGER = re.compile(r"^[+-]?[0-9]+$")


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    serial: str | None
    type: MessageType | None
    limit: int
    before: int | None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    messages: list[dict[str, Any]]  # each the object `/ws/app` delivers (`protocol.app_message`)
    next_before: int | None  # the `before` of the next page; None when this one was the last

    def public(self) -> dict[str, Any]:
        return {"messages": self.messages, "next_before": self.next_before}


def history_query(
    serial: str | None = None,
    type_: str | None = None,
    limit: str | int | None = None,
    before: str | int | None = None,
) -> HistoryQuery:
    """Validate a query as typed; empty values mean "not given"."""
    kind: MessageType | None = None
    if type_:
        try:
            kind = MessageType(type_)
        except ValueError:
            allowed = ", ".join(t.value for t in MessageType)
            raise ValidationError(f"type must be one of {allowed}") from None
    count = _integer("limit", limit, 1, MAX_LIMIT)
    return HistoryQuery(
        serial=serial or None,
        type=kind,
        limit=DEFAULT_LIMIT if count is None else count,
        before=_integer("before", before, 0, MAX_TS),
    )


def _integer(name: str, value: str | int | None, low: int, high: int) -> int | None:
    if value is None or value == "":
        return None
    text = str(value).strip()
    if not _INTEGER.match(text):
        raise ValidationError(f"{name} must be an integer")
    # a long literal is out of range whatever it says; never hand int() thousands of digits
    number = int(text) if len(text) <= 20 else None
    if number is None or not low <= number <= high:
        raise ValidationError(f"{name} must be between {low} and {high}")
    return number


class HistoryService:
    def __init__(self, store: Store, devices: DeviceService, flush: Callable[[], Awaitable[int]] | None = None) -> None:
        self._store = store
        self._devices = devices
        self._flush = flush  # the ingest writer's flush, in a process that runs one

    async def _ingest_flush(self) -> None:
        if self._flush is not None:
            await self._flush()

    async def query(self, query: HistoryQuery, within: Collection[str] | None = None) -> HistoryPage:
        """Newest first; `next_before` is the ts to pass as `before` for the next page (None: no
        more), the ts of this page's oldest message. A page never ends inside a millisecond: it
        holds fewer than `limit` messages when the next would split one, and more when over `limit`
        messages share one.
        An unknown serial is DeviceNotFound (404), as everywhere else; `within` (a key's device
        scope) keeps every other device out, as if it did not exist."""
        serial = query.serial
        if serial is not None:
            if within is not None and serial.lower() not in {s.lower() for s in within}:
                raise DeviceNotFound(serial)
            serial = (await self._devices.get(serial)).serial  # and the stored spelling
        # one more than asked shows whether there is a next page and whether it would split a
        # millisecond: `before` is a ts, so a page ending inside one would put the rest of that
        # millisecond on no page at all (not older than `next_before`, and not on this one)
        found = await self._store.messages.query(serial, query.type, query.limit + 1, query.before, within)
        if len(found) <= query.limit:
            return HistoryPage([e.app_message() for e in found], None)
        boundary = found[query.limit - 1].ts
        page = found[: query.limit]
        if found[query.limit].ts == boundary:
            if found[0].ts != boundary:
                # the boundary millisecond starts the next page instead
                page = [e for e in page if e.ts != boundary]
            else:
                # more than `limit` messages in one millisecond: this page holds all of it
                page = await self._store.messages.query(
                    serial, query.type, None, query.before, within, not_before=boundary
                )
        return HistoryPage([e.app_message() for e in page], page[-1].ts)

    async def entries(self, serial: str, kind: MessageType, limit: int) -> list[HistoryEntry]:
        """A device's stored messages of one kind, newest first, with what was just accepted (the
        ingest batch still being gathered is committed first)."""
        await self._ingest_flush()
        return await self._store.messages.query(serial, kind, limit)
