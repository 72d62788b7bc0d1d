"""Tenants (seed 002): registration, and the one answer to "which tenant owns this device?".

    tenant, key, secret = await tenants.register("My Smart Home", actor="admin")
    await tenants.owner("NXG-1234ABCD")      # the owning tenant's id, None for no such device
    tenants.cached_owner("NXG-1234ABCD")     # the same without a store round trip, None when not known yet

The existing single-site data is the default tenant (id `settings.tenant_id`, slug `default`,
no row in `tenants`); every other tenant has a UUID. Everything a tenant owns is invisible to the
others: the checks that use `owner()` are `bridge.access.Caller.check_device` (every REST route
and WebSocket) and the broker's ACL for the `key` role.

Owners are remembered in memory (serials never change tenant; a deleted device is forgotten, so
a serial taken again later is looked up afresh). The process serving REST learns its own
registrations at once; a device created by another process (the CLI, in the tenant its
`--tenant` names) is looked up in the store on first sight. A serial the store does not hold is remembered
as absent for `ABSENT_TTL_S`, so traffic about a made-up serial costs one lookup a second, not
one per message (a real device cannot speak before it exists, and registering here forgets it).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from nxg_mqtt.errors import ForbiddenError, NotFoundError, ValidationError
from nxg_mqtt.models import ApiKey, Tenant, now_ms
from nxg_mqtt.protocol import DEFAULT_TENANT_SLUG, KeyRole, RevokeReason, TenantError
from nxg_mqtt.services.api_keys import ApiKeyService
from nxg_mqtt.store import Store

NAME_MAX = 200
ABSENT_TTL_S = 1.0
_SLUG_JUNK = re.compile(r"[^a-z0-9]+")


def slugify(name: str) -> str:
    """`"Living Room Lights"` → `"living-room-lights"` (seed 002's group and tenant slugs)."""
    return _SLUG_JUNK.sub("-", name.lower()).strip("-")[:60].strip("-") or "x"


class TenantService:
    def __init__(self, store: Store, keys: ApiKeyService) -> None:
        self._store = store
        self._keys = keys
        self.default_id = store.tenant_id
        self._owners: dict[str, str] = {}  # serial (lower case) → owning tenant
        self._absent: dict[str, float] = {}  # serial (lower case) → monotonic time it may exist by
        self._known: dict[str, Tenant] = {}

    @property
    def default(self) -> Tenant:
        return Tenant(self.default_id, "Default", DEFAULT_TENANT_SLUG, 0)

    async def load(self) -> None:
        """Remember every device's owner (the live fan-out asks without awaiting)."""
        self._owners = {serial.lower(): tenant for serial, tenant in await self._store.devices.owners()}

    # ---- tenants ---------------------------------------------------------------------------------

    async def register(self, name: Any, *, actor: str) -> tuple[Tenant, ApiKey, str]:
        """A new tenant and its first admin API key (the plain key is returned once)."""
        if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX:
            raise ValidationError(f"tenant_name must be a non-empty string of at most {NAME_MAX} characters")
        base = slugify(name.strip())
        for attempt in range(1, 100):
            slug = base if attempt == 1 else f"{base}-{attempt}"
            if slug == DEFAULT_TENANT_SLUG:
                continue
            tenant = Tenant(str(uuid.uuid4()), name.strip(), slug, now_ms())
            if await self._store.tenants.insert(tenant):
                break
        else:  # pragma: no cover - 99 tenants of one name
            raise ValidationError("too many tenants share this name")
        key, secret = await self._keys.create(
            f"{tenant.slug} admin", KeyRole.ADMIN.value, actor=actor, tenant=tenant.id
        )
        await self._store.audit.add(now_ms(), actor, "tenant.register", None, {"tenant_id": tenant.id})
        self._known[tenant.id] = tenant
        return tenant, key, secret

    async def get(self, tenant_id: str) -> Tenant | None:
        if tenant_id == self.default_id:
            return self.default
        known = self._known.get(tenant_id)
        if known is None:
            known = await self._store.tenants.get(tenant_id)
            if known is not None:
                self._known[tenant_id] = known
        return known

    async def require(self, tenant_id: str) -> Tenant:
        """The caller's tenant; 403 `TENANT_REQUIRED` when it has none (seed 002: "missing tenant context")."""
        tenant = await self.get(tenant_id)
        if tenant is None:
            raise ForbiddenError("this credential has no tenant context", code=TenantError.TENANT_REQUIRED)
        return tenant

    async def find(self, id_or_slug: str) -> Tenant:
        """A tenant by its id or slug, for the operator's CLI (`--tenant`); 404 `TENANT_NOT_FOUND`."""
        if id_or_slug in (self.default_id, DEFAULT_TENANT_SLUG):
            return self.default
        found = await self.get(id_or_slug) or await self._store.tenants.by_slug(id_or_slug)
        if found is None:
            raise NotFoundError(f"tenant not found: {id_or_slug}", code=TenantError.TENANT_NOT_FOUND)
        return found

    async def slugs(self) -> dict[str, str]:
        """Every tenant's id → slug, the default tenant's included."""
        return {self.default_id: DEFAULT_TENANT_SLUG} | {t.id: t.slug for t in await self._store.tenants.all()}

    async def resolve(self, caller_tenant: str, given: Any) -> str:
        """The tenant a request names (seed 003's `projectId`: the tenant's id or its slug) if it
        is the caller's own; 404 `TENANT_NOT_FOUND` for any other, as if it did not exist."""
        tenant = await self.require(caller_tenant)
        if isinstance(given, str) and given in (tenant.id, tenant.slug):
            return tenant.id
        raise NotFoundError(f"project not found: {given}", code=TenantError.TENANT_NOT_FOUND)

    # ---- device owners ---------------------------------------------------------------------------

    def cached_owner(self, serial: str) -> str | None:
        """The owner if known without a store round trip; None when not known (or absent)."""
        return self._owners.get(serial.lower())

    def known_absent(self, serial: str) -> bool:
        """The store did not hold `serial` less than `ABSENT_TTL_S` ago."""
        until = self._absent.get(serial.lower())
        return until is not None and time.monotonic() < until

    async def owner(self, serial: str) -> str | None:
        """The tenant owning device `serial`; None if there is no such device."""
        key = serial.lower()
        tenant = self._owners.get(key)
        if tenant is None:
            if self.known_absent(serial):
                return None
            found = await self._store.devices.owner(serial)
            if found is None:
                if len(self._absent) > 10_000:
                    self._absent.clear()
                self._absent[key] = time.monotonic() + ABSENT_TTL_S
                return None
            tenant = self._owners[key] = found[1]
        return tenant

    async def serials(self, tenant: str) -> frozenset[str]:
        """Every device `tenant` owns (a history query's scope)."""
        return frozenset(d.serial for d in await self._store.devices.of_tenant(tenant))

    def remember(self, serial: str, tenant: str) -> None:
        self._owners[serial.lower()] = tenant
        self._absent.pop(serial.lower(), None)

    async def forget_deleted(self, serial: str, why: RevokeReason) -> None:
        """A revocation listener: a deleted device's serial may later belong to anyone."""
        if why is RevokeReason.DELETE:
            self._owners.pop(serial.lower(), None)
