"""Device groups (seed 002) and the fan-out of one command to a room or a group.

A group's slug is made from its name and is unique per tenant (409 `GROUP_EXISTS`); its devices
are the tenant's. A room or group command goes to its devices through the one validated path,
all at once (`CommandService.submit_many`, called by `bridge.v1.fanout`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nxg_mqtt.errors import ConflictError, DeviceNotFound, NotFoundError, ValidationError
from nxg_mqtt.models import Group, now_ms
from nxg_mqtt.services.tenants import TenantService, slugify
from nxg_mqtt.store import Store

NAME_MAX = 200
GROUP_MAX = 10_000
BULK_MANIFESTS_FROM = 20  # `with_capability`: beyond this many devices, read the tenant's manifests at once


class GroupNotFound(NotFoundError):
    code = "GROUP_NOT_FOUND"


def device_ids(value: Any, *, required: bool) -> list[str]:
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value) or len(value) > GROUP_MAX:
        raise ValidationError(f"device_ids must be an array of at most {GROUP_MAX} device ids")
    if required and not value:
        raise ValidationError("device_ids must name at least one device")
    return list(dict.fromkeys(value))


class GroupService:
    def __init__(self, store: Store, tenants: TenantService) -> None:
        self._store = store
        self._tenants = tenants

    async def _own(self, tenant: str, serials: Sequence[str]) -> list[str]:
        """The stored spelling of each serial; DeviceNotFound for one that is not `tenant`'s."""
        own = []
        for serial in serials:
            found = await self._store.devices.owner(serial)
            if found is None or found[1] != tenant:
                raise DeviceNotFound(serial)
            own.append(found[0])
        return own

    async def create(self, tenant: str, name: Any, description: Any, serials: Sequence[str]) -> Group:
        if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX:
            raise ValidationError(f"name must be a non-empty string of at most {NAME_MAX} characters")
        if description is not None and (not isinstance(description, str) or len(description) > 2000):
            raise ValidationError("description must be a string of at most 2000 characters")
        group = Group(
            tenant, slugify(name), name.strip(), description, now_ms(), tuple(await self._own(tenant, serials))
        )
        if not await self._store.groups.insert(group):
            raise ConflictError(f"a group with slug {group.slug!r} exists already", code="GROUP_EXISTS")
        return group

    async def of_tenant(self, tenant: str) -> list[Group]:
        return await self._store.groups.of_tenant(tenant)

    async def get(self, tenant: str, slug: str) -> Group:
        group = await self._store.groups.get(tenant, slug)
        if group is None:
            raise GroupNotFound(f"group not found: {slug}")
        return group

    async def join(self, tenant: str, slug: str, serials: Sequence[str]) -> Group:
        group = await self.get(tenant, slug)
        await self._store.groups.add_members(tenant, group.slug, await self._own(tenant, serials))
        return await self.get(tenant, group.slug)

    async def devices_in_group(self, tenant: str, slug: str) -> list[str]:
        """The serials of a group of `tenant` (GroupNotFound for another tenant's): the targets
        of a group command and of a firmware rollout to a group."""
        return list((await self.get(tenant, slug)).device_ids)

    async def with_capability(self, serials: Sequence[str], capability: str) -> list[str]:
        """The devices whose manifest declares a capability of category (or action) `capability`."""
        if len(serials) > BULK_MANIFESTS_FROM:
            # one query for the tenant's manifests instead of one round trip per device
            latest = {r.serial.lower(): r for r in await self._store.manifests.all_latest()}
            records = [latest.get(serial.lower()) for serial in serials]
        else:
            records = [await self._store.manifests.latest(serial) for serial in serials]
        return [
            serial
            for serial, record in zip(serials, records, strict=True)
            if record is not None
            and any(c.get("category") == capability or c.get("action") == capability for c in record.capabilities)
        ]
