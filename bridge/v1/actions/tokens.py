"""Seed 003's token actions (the core's `DeviceTokenService`, EdDSA JWTs; public key at
`/.well-known/jwks.json`): devices_IssueDeviceToken, devices_ValidateDeviceToken,
devices_IssueHttpProxyToken, devices_ValidateHttpProxyToken.

A token for a device outside the caller's device scope validates as `Invalid` (as if absent).
The proxy URL is `{this bridge}/proxy/{jwt}/`; a `hostname` is recorded in the token and echoed
by validation (this bridge serves the path form only). `redirect` is returned with `Invalid` only
when the token's signature is ours (expired, or its device is gone): a forged token cannot
choose where its victim is sent.
"""

from __future__ import annotations

from typing import Any

from bridge.v1.actions.base import Body, Context, action
from nxg_mqtt.errors import ValidationError
from nxg_mqtt.protocol import Scope
from nxg_mqtt.services.device_tokens import TokenType, valid_for

DEFAULT_PORT = 80


@action("devices_IssueDeviceToken", Scope.ADMIN_DEVICES, fields=("deviceId", "validForSecs", "claims"), writes=True)
async def issue_device_token(ctx: Context, body: Body) -> dict[str, Any]:
    valid_s = valid_for(body.raw("validForSecs", required=False))
    claims = body.raw("claims", required=False)
    device = await ctx.device(body)
    token = await ctx.state.core.tokens.issue(device.serial, TokenType.DEVICE, valid_s, {"claims": claims})
    ctx.detail = {"validForSecs": valid_s}
    return {"jwt": token}


@action("devices_ValidateDeviceToken", Scope.READ_DEVICES, fields=("jwt",))
async def validate_device_token(ctx: Context, body: Body) -> dict[str, Any]:
    verified = await ctx.state.core.tokens.verify(body.text("jwt", max_len=16_384), TokenType.DEVICE)
    if verified is None or not await ctx.caller.may_see(verified.serial):
        return {"result": "Invalid"}
    return {"result": "Valid", "deviceId": verified.serial, "claims": verified.claims.get("claims")}


@action(
    "devices_IssueHttpProxyToken",
    Scope.WRITE_DEVICES,
    fields=("deviceId", "validForSecs", "hostname", "port", "redirect"),
    writes=True,
)
async def issue_http_proxy_token(ctx: Context, body: Body) -> dict[str, Any]:
    valid_s = valid_for(body.raw("validForSecs", required=False))
    hostname = body.string("hostname", required=False, max_len=253)
    port = body.integer("port", low=1, high=65535) or DEFAULT_PORT
    redirect = body.string("redirect", required=False, max_len=2048)
    if redirect is not None and not redirect.startswith(("https://", "http://", "/")):
        raise ValidationError('"redirect" must be an http(s) URL or a path', details=[{"field": "redirect"}])
    device = await ctx.device(body)
    extra: dict[str, Any] = {"port": port}
    if hostname is not None:
        extra["hostname"] = hostname
    if redirect is not None:
        extra["redirect"] = redirect
    token = await ctx.state.core.tokens.issue(device.serial, TokenType.HTTP_PROXY, valid_s, extra)
    base = str(ctx.request.base_url).rstrip("/")
    return {"jwt": token, "url": f"{base}/proxy/{token}/"}


async def check_proxy_token(ctx_tokens: Any, token: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the verified claims, None) or (None, the redirect of a token that is ours but no longer valid)."""
    verified = await ctx_tokens.verify(token, TokenType.HTTP_PROXY)
    if verified is not None:
        return {"deviceId": verified.serial, **verified.claims}, None
    stale = ctx_tokens.decode(token, TokenType.HTTP_PROXY, verify_exp=False)
    redirect = stale.get("redirect") if stale is not None else None
    return None, redirect if isinstance(redirect, str) else None


@action("devices_ValidateHttpProxyToken", Scope.READ_DEVICES, fields=("jwt",))
async def validate_http_proxy_token(ctx: Context, body: Body) -> dict[str, Any]:
    claims, redirect = await check_proxy_token(ctx.state.core.tokens, body.text("jwt", max_len=16_384))
    if claims is None or not await ctx.caller.may_see(claims["deviceId"]):
        return {"result": "Invalid"} if redirect is None else {"result": "Invalid", "redirect": redirect}
    valid: dict[str, Any] = {"result": "Valid", "deviceId": claims["deviceId"]}
    if "hostname" in claims:
        valid["hostname"] = claims["hostname"]
    valid["port"] = claims.get("port", DEFAULT_PORT)
    return valid
