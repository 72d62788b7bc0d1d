"""`/api/v1/auth/...` (seed 002, PROTOCOL §6 "API keys"): create, list, revoke, rotate, me; the
one credential check on REST (Bearer, X-API-Key); bad input gets seed 002's error body."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.bridge.helpers import Stack

KEYS = "/api/v1/auth/api-keys"


async def create(stack: Stack, **body: Any) -> dict[str, Any]:
    response = await stack.http.post(KEYS, json={"name": "k", **body})
    assert response.status_code == 201, response.text
    value: dict[str, Any] = response.json()
    return value


def as_key(stack: Stack, secret: str, header: str = "bearer") -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {secret}"} if header == "bearer" else {"X-API-Key": secret}
    return httpx.AsyncClient(base_url=stack.base, headers=headers, timeout=5.0)


async def test_create_list_rotate_revoke(stack: Stack) -> None:
    created = await create(stack, name="app", role="user", devices=["d-1"])
    assert set(created) == {"status", "id", "key", "prefix", "name"}
    assert created["status"] == "created" and created["name"] == "app"
    assert re.fullmatch(r"nxg_[A-Za-z0-9_-]{43}", created["key"]) and created["key"].startswith(created["prefix"])
    listed = (await stack.http.get(KEYS)).json()["keys"]
    assert [set(k) for k in listed] == [
        {"id", "name", "prefix", "role", "scopes", "devices", "created_at", "last_used_at", "revoked"}
    ]
    assert listed[0]["devices"] == ["d-1"] and listed[0]["role"] == "user" and listed[0]["revoked"] is False
    assert listed[0]["scopes"] == ["read:devices", "read:history", "write:devices"]
    assert created["key"] not in str(listed)
    old = created["key"]
    async with as_key(stack, old) as client:
        assert (await client.get("/api/devices")).status_code == 200
        rotated = (await stack.http.post(f"{KEYS}/rotate", json={"id": created["id"]})).json()
        assert rotated["status"] == "rotated" and rotated["id"] == created["id"] and rotated["key"] != old
        assert (await client.get("/api/devices")).status_code == 401  # the old secret: refused at once
    async with as_key(stack, rotated["key"], header="x-api-key") as client:
        assert (await client.get("/api/devices")).status_code == 200
        revoked = await stack.http.post(f"{KEYS}/revoke", json={"id": created["id"]})
        assert revoked.json() == {"status": "revoked", "id": created["id"]}
        refused = await client.get("/api/devices")
        assert refused.status_code == 401 and "error" in refused.json()
    assert (await stack.http.get(KEYS)).json()["keys"][0]["revoked"] is True


async def test_me_for_the_password_and_a_key(stack: Stack) -> None:
    admin = (await stack.http.get("/api/v1/auth/me")).json()
    assert admin["authenticated"] is True and admin["user"]["role"] == "admin" and admin["user"]["devices"] is None
    created = await create(stack, name="viewer", role="viewer", devices=["d-2"])
    async with as_key(stack, created["key"]) as client:
        me = (await client.get("/api/v1/auth/me")).json()
    assert me["authenticated"] is True and me["has_tenant"] is True
    assert me["user"]["id"] == created["id"] and me["user"]["role"] == "viewer"
    assert me["user"]["scopes"] == ["read:devices", "read:history"] and me["user"]["devices"] == ["d-2"]


BAD_CREATE = [
    (b"not json", 400, "INVALID"),
    (b"[1]", 400, "INVALID"),
    (b'{"role": "user"}', 400, "INVALID"),  # no name
    (b'{"name": "x", "role": "root"}', 400, "INVALID"),
    (b'{"name": "x", "scopes": "read:devices"}', 400, "INVALID"),
    (b'{"name": "x", "scopes": ["fly:devices"]}', 400, "INVALID"),
    (b'{"name": "x", "role": "viewer", "scopes": ["write:devices"]}', 400, "INVALID"),
    (b'{"name": "x", "devices": "d-1"}', 400, "INVALID"),
    (b'{"name": "x", "devices": ["a/b"]}', 400, "INVALID"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_CREATE)
async def test_bad_input_gets_seed_002_errors(stack: Stack, body: bytes, status: int, code: str) -> None:
    response = await stack.http.post(KEYS, content=body)
    assert response.status_code == status, response.text
    value = response.json()
    assert value["success"] is False and value["code"] == code and value["error"] and value["details"] == []
    for path in ("/revoke", "/rotate"):
        assert (await stack.http.post(KEYS + path, content=b"{}")).json()["code"] == "INVALID"
        missing = await stack.http.post(KEYS + path, json={"id": "key_nope"})
        assert missing.status_code == 404 and missing.json()["code"] == "KEY_NOT_FOUND"
    assert (await stack.http.get(KEYS)).status_code == 200  # the server carries on


async def test_missing_or_bad_credential_is_401_and_user_keys_cannot_manage_keys(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base, timeout=5.0) as anonymous:
        for headers in ({}, {"Authorization": "Bearer nxg_nope"}, {"X-API-Key": "wrong"}):
            response = await anonymous.get(KEYS, headers=headers)
            assert response.status_code == 401 and response.json()["code"] == "UNAUTHORIZED"
            assert (await anonymous.get("/api/devices", headers=headers)).status_code == 401
    user = await create(stack, role="user")
    async with as_key(stack, user["key"]) as client:
        for response in (
            await client.get(KEYS),
            await client.post(KEYS, json={"name": "more"}),
            await client.post(f"{KEYS}/revoke", json={"id": user["id"]}),
        ):
            assert response.status_code == 403 and response.json()["code"] == "FORBIDDEN"


async def test_a_key_never_creates_a_wider_key(stack: Stack) -> None:
    scoped = await create(stack, role="admin", devices=["d-3"])
    async with as_key(stack, scoped["key"]) as client:
        wider = await client.post(KEYS, json={"name": "all"})  # every device
        assert wider.status_code == 403
        other = await client.post(KEYS, json={"name": "other", "devices": ["d-4"]})
        assert other.status_code == 403
        narrow = await client.post(KEYS, json={"name": "narrow", "devices": ["d-3"], "role": "viewer"})
        assert narrow.status_code == 201
        # it sees only keys within its devices: not the password-made ones for other devices
        await create(stack, name="elsewhere", devices=["d-4"])
        names = [k["name"] for k in (await client.get(KEYS)).json()["keys"]]
        assert sorted(names) == ["k", "narrow"]


async def test_key_check_is_cached_and_last_used_is_written_behind(stack: Stack) -> None:
    created = await create(stack)
    keys = stack.core.keys
    async with as_key(stack, created["key"]) as client:
        assert (await client.get("/api/devices")).status_code == 200
        lookups = keys.lookups
        for _ in range(20):
            assert (await client.get("/api/devices")).status_code == 200
        assert keys.lookups == lookups  # no store round trip once seen
    listed = (await stack.http.get(KEYS)).json()["keys"]
    assert listed[0]["last_used_at"] is not None
