"""Seed 002's devices: registered with a secret, listed per tenant, secrets rotated, revoked.

    device, secret = await registry.register(tenant, "esp32", home_id=None, room_id=None, actor="admin")

The `device_secret` IS a device token (PROTOCOL §1): the device logs in with its serial (the
`device_id`) and the secret, over MQTT (username = client id = serial, password = secret) or
`/ws/gateway` (`{"t":"auth","token"}`), exactly like a paired device. It also gets a connection
code, so it can be re-paired like any other. Rotating stores a new token hash: the old secret
is refused from that instant, and the live session is dropped through the same revocation path
as a reset (within 1 s, in every process). Revoking refuses the token and the code for good;
commands to it are rejected `DEVICE_REVOKED`.
"""

from __future__ import annotations

import re
from typing import Any

from nxg_mqtt.errors import ConflictError, DeviceNotFound, GatewayError, ValidationError
from nxg_mqtt.models import Device, DeviceKey, now_ms
from nxg_mqtt.protocol import RevokeReason
from nxg_mqtt.services import credentials
from nxg_mqtt.services.devices import DeviceService
from nxg_mqtt.services.homes import HomeService
from nxg_mqtt.services.tenants import TenantService
from nxg_mqtt.store import Store

DEVICE_TYPE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
UNKNOWN_FIRMWARE = "0.0.0"  # seed 002's value for a device that never reported one


class RegistrationService:
    def __init__(self, store: Store, devices: DeviceService, tenants: TenantService, homes: HomeService) -> None:
        self._store = store
        self._devices = devices
        self._tenants = tenants
        self._homes = homes

    async def device(self, tenant: str, serial: str) -> Device:
        """Device `serial` of `tenant`; DeviceNotFound for a device of any other tenant too."""
        device = await self._devices.get(serial)
        if device.tenant != tenant:
            raise DeviceNotFound(serial)
        return device

    async def register(
        self, tenant: str, device_type: Any, home_id: Any = None, room_id: Any = None, *, actor: str
    ) -> tuple[Device, str]:
        """A new device of `tenant`, logged in with the returned secret (shown once)."""
        if not isinstance(device_type, str) or not DEVICE_TYPE_RE.match(device_type):
            raise ValidationError("device_type must be 1-64 characters of A-Z, a-z, 0-9, '_', '.' or '-'")
        home, room = await self._homes.placement(tenant, home_id, room_id)
        secret = credentials.new_token()
        for _attempt in range(8):
            serial = credentials.new_serial()
            created = now_ms()
            inserted = await self._store.devices.insert(
                serial,
                None,
                credentials.new_code(),
                created,
                tenant=tenant,
                device_type=device_type,
                home_id=home,
                room_id=room,
            )
            if inserted:
                break
        else:  # pragma: no cover - 40 random bits, eight times
            raise ConflictError("could not allocate a unique serial or code")
        async with self._store.transaction():
            await self._store.devices.set_secret(serial, credentials.token_hash(secret), 1)
            await self._store.device_keys.add(tenant, serial, 1, created)
        self._tenants.remember(serial, tenant)
        await self._store.audit.add(now_ms(), actor, "device.register", serial, {"device_type": device_type})
        try:
            await self._devices.credentials_issued(serial)
        except GatewayError:
            # nobody will ever hold this secret: the half-made device goes (audited), so a failed
            # registration leaves nothing behind and a retry starts clean
            await self._devices.delete(serial, actor)
            raise
        return await self._devices.get(serial), secret

    async def of_tenant(self, tenant: str) -> list[Device]:
        return [await self._devices.get(d.serial) for d in await self._store.devices.of_tenant(tenant)]

    async def firmware(self, devices: list[Device]) -> dict[str, str]:
        """What each device last reported as its firmware version (status `firmware`)."""
        return await self._store.messages.reported_firmware([d.serial for d in devices])

    async def rotate(self, tenant: str, serial: str, *, actor: str) -> tuple[Device, str]:
        device = await self.device(tenant, serial)
        if device.revoked:
            raise ConflictError(f"device {device.serial} is revoked", code="DEVICE_REVOKED")
        secret = credentials.new_token()
        version = device.key_version + 1
        async with self._store.transaction():
            await self._store.devices.set_secret(device.serial, credentials.token_hash(secret), version)
            await self._store.device_keys.add(device.tenant, device.serial, version, now_ms())
        await self._store.audit.add(now_ms(), actor, "device.rotate_secret", device.serial, {"key_version": version})
        await self._devices.end_sessions(device.serial, RevokeReason.ROTATED)
        # the broker's credential table has the new secret's hash before the caller has the secret
        await self._devices.credentials_issued(device.serial)
        return await self._devices.get(device.serial), secret

    async def key_history(self, tenant: str, serial: str) -> list[DeviceKey]:
        device = await self.device(tenant, serial)
        return await self._store.device_keys.history(device.serial)

    async def revoke(self, tenant: str, serial: str, *, actor: str) -> Device:
        device = await self.device(tenant, serial)
        if not device.revoked:
            async with self._store.transaction():
                await self._store.devices.set_revoked(device.serial)
                await self._store.device_keys.retire_all(device.serial, now_ms(), RevokeReason.REVOKED.value)
            await self._store.audit.add(now_ms(), actor, "device.revoke", device.serial)
            await self._devices.end_sessions(device.serial, RevokeReason.REVOKED)
        return await self._devices.get(device.serial)
