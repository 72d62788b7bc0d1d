"""Seed 003's certificate actions (the core's `CertificateService`): devices_AddCertificate,
devices_DeleteCertificate, devices_SetCertificateStatus. A fingerprint is the certificate's
SHA-256 in hex (`:` separators and case ignored). Leaving `Active` ends the device's session."""

from __future__ import annotations

from typing import Any

from bridge.v1.actions.base import Body, Context, action
from nxg_mqtt.errors import NotFoundError
from nxg_mqtt.protocol import Scope
from nxg_mqtt.store.certificates import Certificate


async def certificate(ctx: Context, body: Body) -> Certificate:
    cert_id = body.text("certificateId", max_len=64)
    cert = await ctx.state.core.certificates.get(cert_id)
    if not await ctx.caller.may_see(cert.serial):
        raise NotFoundError(f"certificate not found: {cert_id}", code="CERTIFICATE_NOT_FOUND")
    ctx.target = cert.serial
    ctx.detail = {"certificateId": cert.id}
    return cert


@action("devices_AddCertificate", Scope.ADMIN_DEVICES, fields=("deviceId", "fingerprint", "status"), writes=True)
async def add_certificate(ctx: Context, body: Body) -> dict[str, Any]:
    fingerprint = body.raw("fingerprint")
    status = body.raw("status", required=False)
    device = await ctx.device(body)
    cert = await ctx.state.core.certificates.add(device.serial, fingerprint, status, actor=ctx.caller.actor)
    ctx.detail = {"certificateId": cert.id, "status": cert.status}
    return {"certificateId": cert.id}


@action("devices_DeleteCertificate", Scope.ADMIN_DEVICES, fields=("certificateId",), writes=True)
async def delete_certificate(ctx: Context, body: Body) -> dict[str, Any]:
    cert = await certificate(ctx, body)
    await ctx.state.core.certificates.delete(cert.id, actor=ctx.caller.actor)
    return {}


@action("devices_SetCertificateStatus", Scope.ADMIN_DEVICES, fields=("certificateId", "status"), writes=True)
async def set_certificate_status(ctx: Context, body: Body) -> dict[str, Any]:
    status = body.raw("status")
    cert = await certificate(ctx, body)
    await ctx.state.core.certificates.set_status(cert.id, status, actor=ctx.caller.actor)
    ctx.detail["status"] = status
    return {}
