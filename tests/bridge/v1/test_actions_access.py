"""Who may invoke which action: the credential check every surface uses, roles (a viewer cannot
write), device scopes (outside, a device does not exist), the one error shape, and the audit."""

from __future__ import annotations

import httpx

from tests.bridge.helpers import Stack
from tests.bridge.v1.helpers import INVOKE, error_of, invoke, key, ok


async def test_credentials_unknown_actions_and_bad_bodies(stack: Stack) -> None:
    await stack.create_device("ac-1")
    async with httpx.AsyncClient(base_url=stack.base, timeout=5.0) as anonymous:
        error_of(await anonymous.post(INVOKE + "devices_Query", json={}), 401, "UNAUTHORIZED")
        error_of(await anonymous.post(INVOKE + "devices_Nope", json={}), 401, "UNAUTHORIZED")  # nothing leaks
    unknown = error_of(await invoke(stack, "devices_Nope"), 404, "ACTION_NOT_FOUND")
    assert "devices_Nope" in unknown["error"]
    error_of(await invoke(stack, "devices_query"), 404, "ACTION_NOT_FOUND")  # names are case-sensitive
    assert (await stack.http.get(INVOKE + "devices_Query")).status_code == 405
    extra = error_of(await invoke(stack, "devices_GetDetails", {"deviceId": "ac-1", "device_id": "x"}), 400, "INVALID")
    assert extra["details"] == [{"field": "device_id", "error": "unknown field"}]
    not_json = await stack.http.post(INVOKE + "devices_GetDetails", content=b"{nope")
    error_of(not_json, 400, "INVALID")
    error_of(await stack.http.post(INVOKE + "devices_GetDetails", json=["ac-1"]), 400, "INVALID")
    empty = await stack.http.post(INVOKE + "devices_Query", content=b"")
    assert empty.status_code == 200  # an action without fields takes an empty body


async def test_viewer_reads_but_cannot_write(stack: Stack) -> None:
    await stack.create_device("ac-1")
    await ok(stack, "devices_SetProperty", {"deviceId": "ac-1", "name": "p", "value": 1})
    viewer = await key(stack, "viewer")
    async with httpx.AsyncClient(base_url=stack.base, headers={"X-API-Key": viewer}, timeout=5.0) as client:
        got = await invoke(stack, "devices_GetProperty", {"deviceId": "ac-1", "name": "p"}, client=client)
        assert got.status_code == 200 and got.json()["result"] == "Found"
        for action, body in (
            ("devices_SetProperty", {"deviceId": "ac-1", "name": "p", "value": 2}),
            ("devices_RemoveProperty", {"deviceId": "ac-1", "name": "p"}),
            ("devices_SetName", {"deviceId": "ac-1", "name": "n"}),
            ("devices_PublishEvents", {"deviceId": "ac-1", "events": []}),
            ("devices_Delete", {"deviceId": "ac-1"}),
            ("devices_Create", {"projectId": "default", "fingerprint": "f"}),
        ):
            error_of(await invoke(stack, action, body, client=client), 403, "FORBIDDEN")
    assert (await ok(stack, "devices_GetProperty", {"deviceId": "ac-1", "name": "p"}))["version"] == 1
    audit = (await ok(stack, "devices_QueryAuditLog", {"deviceId": "ac-1"}))["events"]
    refused = [e for e in audit if e["event"] == "devices_SetProperty" and e["data"]["outcome"] == "FORBIDDEN"]
    assert refused and refused[0]["actor"]["actor"] == "OrganizationApiToken"


async def test_device_scope_hides_other_devices(stack: Stack) -> None:
    for serial in ("in-1", "out-1"):
        await stack.create_device(serial)
    cert = await ok(stack, "devices_AddCertificate", {"deviceId": "out-1", "fingerprint": "ab" * 32})
    await ok(stack, "devices_RegisterConnection", {"deviceId": "out-1", "nodeId": "n", "connectionId": "c-out"})
    token = (await ok(stack, "devices_IssueDeviceToken", {"deviceId": "out-1"}))["jwt"]
    proxy_token = (await ok(stack, "devices_IssueHttpProxyToken", {"deviceId": "out-1"}))["jwt"]
    scoped = await key(stack, "admin", ["in-1"])
    async with httpx.AsyncClient(base_url=stack.base, headers={"X-API-Key": scoped}, timeout=5.0) as client:
        listed = (await invoke(stack, "devices_Query", client=client)).json()["devices"]
        assert [d["deviceId"] for d in listed] == ["in-1"]
        for action, body in (
            ("devices_GetDetails", {"deviceId": "{}"}),
            ("devices_SetProperty", {"deviceId": "{}", "name": "p", "value": 1}),
            ("devices_QueryEvents", {"deviceId": "{}"}),
            ("devices_Delete", {"deviceId": "{}"}),
        ):
            hidden = error_of(
                await invoke(stack, action, {**body, "deviceId": "out-1"}, client=client), 404, "DEVICE_NOT_FOUND"
            )
            never = error_of(
                await invoke(stack, action, {**body, "deviceId": "never-1"}, client=client), 404, "DEVICE_NOT_FOUND"
            )
            assert hidden["error"].replace("out-1", "never-1") == never["error"], action
        cert_body = {"certificateId": cert["certificateId"], "status": "Active"}
        error_of(
            await invoke(stack, "devices_SetCertificateStatus", cert_body, client=client), 404, "CERTIFICATE_NOT_FOUND"
        )
        end = {"connectionId": "c-out", "endReason": "Unknown"}
        error_of(await invoke(stack, "devices_UnregisterConnection", end, client=client), 404, "CONNECTION_NOT_FOUND")
        for action, jwt in (("devices_ValidateDeviceToken", token), ("devices_ValidateHttpProxyToken", proxy_token)):
            assert (await invoke(stack, action, {"jwt": jwt}, client=client)).json() == {"result": "Invalid"}
        # a key limited to listed devices cannot create one it could never see
        created = await invoke(stack, "devices_Create", {"projectId": "default", "fingerprint": "f"}, client=client)
        error_of(created, 404, "PROJECT_NOT_FOUND")
        assert (await invoke(stack, "devices_GetDetails", {"deviceId": "in-1"}, client=client)).status_code == 200


async def test_every_write_is_audited_under_its_caller(stack: Stack) -> None:
    await stack.create_device("au-2")
    user = await key(stack, "user")
    key_id = (await stack.http.get("/api/v1/auth/api-keys")).json()["keys"][0]["id"]
    async with httpx.AsyncClient(base_url=stack.base, headers={"X-API-Key": user}, timeout=5.0) as client:
        for action, body in (
            ("devices_SetName", {"deviceId": "au-2", "name": "x"}),
            ("devices_SetProperty", {"deviceId": "au-2", "name": "p", "value": 1}),
            ("devices_RemoveProperty", {"deviceId": "au-2", "name": "p"}),
            ("devices_IssueHttpProxyToken", {"deviceId": "au-2"}),
        ):
            assert (await invoke(stack, action, body, client=client)).status_code == 200, action
            # reads are not audited: the log would otherwise fill with its own queries
            await invoke(stack, "devices_QueryProperties", {"deviceId": "au-2"}, client=client)
    events = (await ok(stack, "devices_QueryAuditLog", {"deviceId": "au-2"}))["events"]
    mine = [
        e
        for e in events
        if e["actor"] == {"actor": "OrganizationApiToken", "organizationId": "default", "tokenId": key_id}
    ]
    assert [e["event"] for e in reversed(mine) if e["event"].startswith("devices_")] == [
        "devices_SetName",
        "devices_SetProperty",
        "devices_RemoveProperty",
        "devices_IssueHttpProxyToken",
    ]
    assert all(e["data"]["outcome"] == "ok" for e in mine)
    assert not [e for e in events if e["event"] == "devices_QueryProperties"]
