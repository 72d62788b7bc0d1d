"""Seed 002's tenant registration and `GET /auth/me`'s tenant context; 403 without one."""

from __future__ import annotations

import uuid

import httpx

from tests.bridge.helpers import Stack


async def test_register_a_tenant_and_use_its_first_admin_key(stack: Stack) -> None:
    response = await stack.http.post("/api/v1/tenant/register", json={"tenant_name": "My Smart Home"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert uuid.UUID(body["tenant_id"]) and body["tenant_slug"] == "my-smart-home" and body["status"] == "created"
    key = body["api_key"]
    assert key["key"].startswith("nxg_") and key["role"] == "admin" and body["user_id"] == key["id"]
    async with httpx.AsyncClient(base_url=stack.base, headers={"Authorization": f"Bearer {key['key']}"}) as http:
        me = (await http.get("/api/v1/auth/me")).json()
        assert me["has_tenant"] is True
        assert me["user"]["tenant_id"] == body["tenant_id"] and me["user"]["tenant_slug"] == "my-smart-home"
        assert me["user"]["role"] == "admin" and me["user"]["id"] == body["user_id"]
        # the key is shown once: listing shows its prefix only
        listed = (await http.get("/api/v1/auth/api-keys")).json()["keys"]
        assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0]
    again = await stack.http.post("/api/v1/tenant/register", json={"tenant_name": "My Smart Home"})
    assert again.json()["tenant_slug"] == "my-smart-home-2" and again.json()["tenant_id"] != body["tenant_id"]
    default = await stack.http.post("/api/v1/tenant/register", json={"tenant_name": "Default"})
    assert default.json()["tenant_slug"] == "default-2"  # `default` is the default tenant's


async def test_me_for_the_admin_password_is_the_default_tenants_admin(stack: Stack) -> None:
    me = (await stack.http.get("/api/v1/auth/me")).json()
    assert me["has_tenant"] is True and me["authenticated"] is True
    assert me["user"]["tenant_id"] == "default" and me["user"]["tenant_slug"] == "default"
    assert me["user"]["role"] == "admin"


async def test_register_errors(stack: Stack) -> None:
    for body in ({}, {"tenant_name": ""}, {"tenant_name": 3}, {"tenant_name": "x" * 201}):
        response = await stack.http.post("/api/v1/tenant/register", json=body)
        assert response.status_code == 400 and response.json()["code"] == "INVALID", body
    async with httpx.AsyncClient(base_url=stack.base) as anonymous:
        response = await anonymous.post("/api/v1/tenant/register", json={"tenant_name": "x"})
        assert response.status_code == 401 and response.json()["code"] == "UNAUTHORIZED"


async def test_a_credential_without_a_tenant_context_is_403(stack: Stack) -> None:
    """A key whose tenant does not exist (its tenant gone): seed 002's 403 "missing tenant context"."""
    _, secret = await stack.core.keys.create("orphan", "admin", tenant="no-such-tenant")
    async with httpx.AsyncClient(base_url=stack.base, headers={"Authorization": f"Bearer {secret}"}) as http:
        me = (await http.get("/api/v1/auth/me")).json()
        assert me["has_tenant"] is False and me["user"]["role"] == "none" and me["user"]["tenant_id"] is None
        for method, path, body in (
            ("GET", "/api/v1/devices", None),
            ("POST", "/api/v1/device/register", {"device_type": "esp32"}),
            ("GET", "/api/v1/homes", None),
            ("POST", "/api/v1/homes", {"home_name": "x"}),
            ("GET", "/api/v1/groups", None),
            ("POST", "/api/v1/groups", {"name": "x"}),
        ):
            response = await http.request(method, path, json=body)
            assert response.status_code == 403, (path, response.text)
            assert response.json()["code"] == "TENANT_REQUIRED"


async def test_resolve_a_project_id_for_seed_003(stack: Stack) -> None:
    """`TenantService.resolve`: the caller's own tenant by id or slug; any other is 404."""
    tenants = stack.core.tenants
    assert await tenants.resolve("default", "default") == "default"
    tenant, _, _ = await tenants.register("Acme", actor="test")
    assert await tenants.resolve(tenant.id, "acme") == tenant.id
    assert await tenants.resolve(tenant.id, tenant.id) == tenant.id
    for other in ("default", "nope", None):
        try:
            await tenants.resolve(tenant.id, other)
        except Exception as exc:
            assert getattr(exc, "code", None) == "TENANT_NOT_FOUND" and getattr(exc, "status", None) == 404
        else:
            raise AssertionError(f"{other!r} resolved")
