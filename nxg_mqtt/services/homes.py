"""Homes and rooms (seed 002), and which devices are placed in them.

A home has a name and an IANA time zone (checked against the system's zoneinfo database); a room
belongs to one home. Deleting a home that still holds devices is refused with 409
`HOME_NOT_EMPTY` (move or delete its devices first): silently detaching them would lose where
they are. Deleting a room detaches its devices from the room (they stay in the home).
"""

from __future__ import annotations

import uuid
import zoneinfo
from functools import cache
from typing import Any

from nxg_mqtt.errors import ConflictError, NotFoundError, ValidationError
from nxg_mqtt.models import Home, Room, now_ms
from nxg_mqtt.store import Store

NAME_MAX = 200


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_timezone(value: Any) -> str:
    if not isinstance(value, str) or value not in _zones():
        raise ValidationError(f"timezone must be an IANA time zone such as Europe/Paris, not {value!r}")
    return value


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > NAME_MAX:
        raise ValidationError(f"{field} must be a non-empty string of at most {NAME_MAX} characters")
    return value.strip()


class HomeNotFound(NotFoundError):
    code = "HOME_NOT_FOUND"


class RoomNotFound(NotFoundError):
    code = "ROOM_NOT_FOUND"


class HomeService:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(self, tenant: str, name: Any, timezone: Any = "UTC") -> Home:
        home = Home(str(uuid.uuid4()), tenant, _name(name, "home_name"), check_timezone(timezone), now_ms())
        await self._store.homes.insert(home)
        return home

    async def of_tenant(self, tenant: str) -> list[Home]:
        return await self._store.homes.of_tenant(tenant)

    async def get(self, tenant: str, home_id: Any) -> Home:
        home = await self._store.homes.get(tenant, home_id) if isinstance(home_id, str) else None
        if home is None:
            raise HomeNotFound(f"home not found: {home_id}")
        return home

    async def update(self, tenant: str, home_id: str, changes: dict[str, Any]) -> Home:
        home = await self.get(tenant, home_id)
        unknown = sorted(set(changes) - {"home_name", "timezone"})
        if unknown:
            raise ValidationError(f"unknown fields: {', '.join(unknown)} (home_name and timezone may change)")
        name = _name(changes["home_name"], "home_name") if "home_name" in changes else home.name
        zone = check_timezone(changes["timezone"]) if "timezone" in changes else home.timezone
        await self._store.homes.update(tenant, home.id, name, zone)
        return await self.get(tenant, home.id)

    async def delete(self, tenant: str, home_id: str) -> None:
        home = await self.get(tenant, home_id)
        placed = await self._store.devices.in_home(home.id)
        if placed:
            raise ConflictError(
                f"home {home.id} still holds {len(placed)} device(s); move or delete them first",
                code="HOME_NOT_EMPTY",
                details=placed,
            )
        await self._store.homes.delete(tenant, home.id)

    # ---- rooms -----------------------------------------------------------------------------------

    async def add_room(self, tenant: str, home_id: str, name: Any) -> Room:
        home = await self.get(tenant, home_id)
        room = Room(str(uuid.uuid4()), tenant, home.id, _name(name, "name"), now_ms())
        await self._store.homes.insert_room(room)
        return room

    async def rooms(self, tenant: str, home_id: str) -> list[Room]:
        home = await self.get(tenant, home_id)
        return await self._store.homes.rooms(tenant, home.id)

    async def room(self, tenant: str, room_id: Any) -> Room:
        room = await self._store.homes.room(tenant, room_id) if isinstance(room_id, str) else None
        if room is None:
            raise RoomNotFound(f"room not found: {room_id}")
        return room

    async def delete_room(self, tenant: str, home_id: str, room_id: str) -> None:
        await self.get(tenant, home_id)
        room = await self.room(tenant, room_id)
        if room.home_id != home_id:
            raise RoomNotFound(f"room not found: {room_id}")
        async with self._store.transaction():
            await self._store.devices.leave_room(room.id)
            await self._store.homes.delete_room(tenant, room.id)

    async def placement(self, tenant: str, home_id: Any, room_id: Any) -> tuple[str | None, str | None]:
        """(home, room) for a device being placed: both optional; a room implies its home, and a
        room of another home than the one given is a 400."""
        if home_id is not None and not isinstance(home_id, str):
            raise ValidationError("home_id must be a string")
        if room_id is not None and not isinstance(room_id, str):
            raise ValidationError("room_id must be a string")
        home = (await self.get(tenant, home_id)).id if home_id is not None else None
        if room_id is None:
            return home, None
        room = await self.room(tenant, room_id)
        if home is not None and room.home_id != home:
            raise ValidationError(f"room {room.id} is not in home {home}")
        return room.home_id, room.id

    async def devices_in_room(self, tenant: str, room_id: str) -> list[str]:
        """The serials placed in a room of `tenant` (RoomNotFound for another tenant's room):
        the targets of a room command and of a firmware rollout to a room."""
        room = await self.room(tenant, room_id)
        return await self._store.devices.in_room(room.id)
