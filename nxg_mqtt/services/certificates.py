"""Device certificates (seed 003) and login by client certificate on the TLS MQTT listener.

A certificate is known by its SHA-256 fingerprint (lowercase hex of the DER bytes) and bound to a
device with a status: `Pending` (seen or added, waiting for an operator), `Active` (the device
may log in with it), `Rejected`, `Revoked`, `Conflict` (the same fingerprint on two devices of
one tenant; set on both when it happens, and never a way in). A client certificate the TLS listener verified
(`--tls-ca`) logs in as S when its fingerprint is `Active` for S and the client id is S; an
unknown one (on no device yet) is recorded `Pending` for the client id's device, with `firstSeen`. Moving a
certificate away from `Active` (or deleting it) ends the device's live session at once.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from enum import StrEnum
from typing import Any

from nxg_mqtt.errors import ConflictError, DeviceNotFound, NotFoundError, ValidationError
from nxg_mqtt.models import now_ms
from nxg_mqtt.protocol import RevokeReason
from nxg_mqtt.services.devices import DeviceService
from nxg_mqtt.store import Store
from nxg_mqtt.store.certificates import Certificate

FINGERPRINT_RE = re.compile(r"^[0-9a-f]{64}$")


class CertificateStatus(StrEnum):
    """Seed 003's `DeviceCertificateStatus`."""

    PENDING = "Pending"
    ACTIVE = "Active"
    REJECTED = "Rejected"
    REVOKED = "Revoked"
    CONFLICT = "Conflict"


def fingerprint_of(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def normalize_fingerprint(value: Any) -> str:
    """Hex SHA-256, case and `:` separators ignored (as `openssl x509 -fingerprint` prints it)."""
    if not isinstance(value, str):
        raise ValidationError('"fingerprint" must be a string: the certificate\'s SHA-256 in hex')
    text = value.strip().lower().replace(":", "")
    if not FINGERPRINT_RE.match(text):
        raise ValidationError('"fingerprint" must be a SHA-256 in hex (64 digits, ":" separators allowed)')
    return text


def check_status(value: Any) -> CertificateStatus:
    try:
        return CertificateStatus(value)
    except ValueError:
        raise ValidationError('"status" must be one of ' + ", ".join(s.value for s in CertificateStatus)) from None


class CertificateService:
    def __init__(self, store: Store, devices: DeviceService) -> None:
        self._store = store
        self._devices = devices

    async def add(self, serial: str, fingerprint: Any, status: Any = None, actor: str = "admin") -> Certificate:
        device = await self._devices.get(serial)
        fingerprint = normalize_fingerprint(fingerprint)
        wanted = CertificateStatus.PENDING if status is None else check_status(status)
        others = [
            c
            for c in await self._store.certificates.by_fingerprint(fingerprint)
            if c.serial != device.serial and await self._tenant_of(c.serial) == device.tenant
        ]
        if others:
            wanted = CertificateStatus.CONFLICT
        cert_id = "cert_" + secrets.token_hex(8)
        if not await self._store.certificates.insert(cert_id, device.serial, fingerprint, wanted, now_ms()):
            raise ConflictError("this device has this certificate already")
        for other in others:
            await self._set(other, CertificateStatus.CONFLICT)
        await self._store.audit.add(now_ms(), actor, "certificate.add", device.serial, {"certificateId": cert_id})
        found = await self._store.certificates.get(cert_id)
        assert found is not None
        return found

    async def _tenant_of(self, serial: str) -> str | None:
        # a Conflict is within one tenant: another tenant adding a fingerprint it has seen must
        # neither learn that it exists elsewhere nor knock the owner's certificate out of Active
        # (login is by client id and fingerprint together, so the two never compete)
        other = await self._store.devices.get(serial)
        return other.tenant if other is not None else None

    async def get(self, cert_id: Any) -> Certificate:
        if not isinstance(cert_id, str) or not cert_id:
            raise ValidationError('"certificateId" is required')
        cert = await self._store.certificates.get(cert_id)
        if cert is None:
            raise NotFoundError(f"certificate not found: {cert_id}", code="CERTIFICATE_NOT_FOUND")
        return cert

    async def for_device(self, serial: str) -> list[Certificate]:
        return await self._store.certificates.for_device(serial)

    async def set_status(self, cert_id: Any, status: Any, actor: str = "admin") -> None:
        wanted = check_status(status)
        cert = await self.get(cert_id)
        await self._set(cert, wanted)
        await self._store.audit.add(
            now_ms(), actor, "certificate.status", cert.serial, {"certificateId": cert.id, "status": wanted.value}
        )

    async def delete(self, cert_id: Any, actor: str = "admin") -> None:
        cert = await self.get(cert_id)
        await self._store.certificates.delete(cert.id)
        await self._store.audit.add(now_ms(), actor, "certificate.delete", cert.serial, {"certificateId": cert.id})
        if cert.status == CertificateStatus.ACTIVE:
            await self._devices.end_sessions(cert.serial, RevokeReason.CERTIFICATE)

    async def _set(self, cert: Certificate, status: CertificateStatus) -> None:
        await self._store.certificates.set_status(cert.id, status)
        if cert.status == CertificateStatus.ACTIVE and status != CertificateStatus.ACTIVE:
            # its session may have logged in with it: end it now (within 1 s elsewhere, by signal)
            await self._devices.end_sessions(cert.serial, RevokeReason.CERTIFICATE)

    async def login(self, client_id: str, der: bytes) -> str | None:
        """The serial a client certificate logs in as, or None. An unknown certificate is recorded
        `Pending` for the device the client id names (if it exists), for an operator to approve."""
        fingerprint = fingerprint_of(der)
        known = await self._store.certificates.by_fingerprint(fingerprint)
        for cert in known:
            if cert.serial.lower() == client_id.lower():
                return cert.serial if cert.status == CertificateStatus.ACTIVE else None
        if known:
            # another device's certificate under this client id: refused, never recorded (recording
            # it would turn the rightful device's certificate into a Conflict: a denial of service)
            return None
        try:
            device = await self._devices.get(client_id)
        except DeviceNotFound:
            return None
        await self.add(device.serial, fingerprint, CertificateStatus.PENDING, actor=f"device:{device.serial}")
        return None
