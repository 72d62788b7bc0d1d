"""Seed 003's actions API, one case per action, driven from the table of seed 003's action names:
an action missing from the server (or from `CASES`) fails by name. Each case checks the success
shape exactly (camelCase, the seed's variants) and its refusals."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import pytest

from bridge.v1.actions import ACTIONS
from nxg_mqtt.services.device_tokens import ALGORITHM, ISSUER
from tests.bridge.helpers import Stack, recv_until
from tests.bridge.v1.helpers import error_of, invoke, ok, online_device
from tests.mqtt_client import Clients, wait_for

# seed 003, in its order: every one must be served
SEED_003_ACTIONS = (
    "devices_Query",
    "devices_GetDetails",
    "devices_Create",
    "devices_Delete",
    "devices_SetName",
    "devices_IssueDeviceToken",
    "devices_ValidateDeviceToken",
    "devices_AddCertificate",
    "devices_DeleteCertificate",
    "devices_SetCertificateStatus",
    "devices_RegisterConnection",
    "devices_UnregisterConnection",
    "devices_QueryConnections",
    "devices_IssueHttpProxyToken",
    "devices_ValidateHttpProxyToken",
    "devices_PublishEvents",
    "devices_QueryEvents",
    "devices_SetProperty",
    "devices_GetProperty",
    "devices_RemoveProperty",
    "devices_QueryProperties",
    "devices_QueryAuditLog",
    "devices_QueryCommands",
)
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
FP_A = "ab" * 32
FP_B = "cd" * 32

Case = Callable[[Stack, Clients], Awaitable[None]]
CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES[name] = fn
        return fn

    return register


@pytest.mark.parametrize("name", SEED_003_ACTIONS)
async def test_action(stack: Stack, paho: Clients, name: str) -> None:
    assert name in ACTIONS, f"{name} is not served"
    assert name in CASES, f"{name} has no test case"
    await CASES[name](stack, paho)


def test_no_action_beyond_the_seed() -> None:
    assert set(ACTIONS) == set(SEED_003_ACTIONS)


# ---- devices --------------------------------------------------------------------------------------


@case("devices_Query")
async def _query(stack: Stack, paho: Clients) -> None:
    await stack.create_device("q-off")
    assert await ok(stack, "devices_Query") == {
        "devices": [
            {"deviceId": "q-off", "projectId": "default", "isConnected": False, "currentConnectionDurationSecs": None}
        ]
    }
    await online_device(stack, paho, "q-on")
    await stack.core.ingest.flush()
    devices = {d["deviceId"]: d for d in (await ok(stack, "devices_Query"))["devices"]}
    on = devices["q-on"]
    assert set(on) == {"deviceId", "projectId", "isConnected", "lastConnectedAt", "currentConnectionDurationSecs"}
    assert on["isConnected"] is True and ISO.match(on["lastConnectedAt"])
    assert isinstance(on["currentConnectionDurationSecs"], int) and on["currentConnectionDurationSecs"] >= 0
    error_of(await invoke(stack, "devices_Query", {"deviceId": "x"}), 400, "INVALID")  # no fields


@case("devices_GetDetails")
async def _get_details(stack: Stack, paho: Clients) -> None:
    created = await ok(stack, "devices_Create", {"projectId": "default", "fingerprint": "id-fp-1"})
    serial = created["deviceId"]
    cert = await ok(stack, "devices_AddCertificate", {"deviceId": serial, "fingerprint": FP_A})
    await ok(stack, "devices_RegisterConnection", {"deviceId": serial, "nodeId": "n2", "connectionId": "c-9"})
    details = await ok(stack, "devices_GetDetails", {"deviceId": serial})
    assert set(details) == {"deviceId", "projectId", "fingerprintId", "isConnected", "certificates", "connections"}
    assert (details["deviceId"], details["projectId"], details["fingerprintId"]) == (serial, "default", "id-fp-1")
    assert details["isConnected"] is True  # a connection another node registered
    [c] = details["certificates"]
    assert c.keys() == {"certificateId", "status", "fingerprint", "firstSeen"} and ISO.match(c["firstSeen"])
    assert (c["certificateId"], c["status"], c["fingerprint"]) == (cert["certificateId"], "Pending", FP_A)
    [conn] = details["connections"]
    assert conn.keys() == {"connectionId", "nodeId", "connectedAt", "connectedForSecs"}
    assert (conn["connectionId"], conn["nodeId"]) == ("c-9", "n2")
    await ok(stack, "devices_SetName", {"deviceId": serial, "name": "Porch"})
    assert (await ok(stack, "devices_GetDetails", {"deviceId": serial}))["name"] == "Porch"
    error_of(await invoke(stack, "devices_GetDetails", {"deviceId": "ghost"}), 404, "DEVICE_NOT_FOUND")
    missing = error_of(await invoke(stack, "devices_GetDetails", {}), 400, "INVALID")
    assert missing["details"] == [{"field": "deviceId", "error": "required"}]
    error_of(await invoke(stack, "devices_GetDetails", {"deviceId": 5}), 400, "INVALID")


@case("devices_Create")
async def _create(stack: Stack, paho: Clients) -> None:
    created = await ok(stack, "devices_Create", {"projectId": "default", "fingerprint": "fp-x"})
    assert list(created) == ["deviceId"] and created["deviceId"].startswith("NXG-")
    listed = (await stack.http.get(f"/api/devices/{created['deviceId']}")).json()
    assert listed["serial"] == created["deviceId"]
    again = await invoke(stack, "devices_Create", {"projectId": "default", "fingerprint": "fp-x"})
    error_of(again, 409, "CONFLICT")
    error_of(
        await invoke(stack, "devices_Create", {"projectId": "other", "fingerprint": "fp-y"}), 404, "PROJECT_NOT_FOUND"
    )
    error_of(await invoke(stack, "devices_Create", {"projectId": "default"}), 400, "INVALID")
    error_of(await invoke(stack, "devices_Create", {"fingerprint": "fp-z"}), 400, "INVALID")


@case("devices_Delete")
async def _delete(stack: Stack, paho: Clients) -> None:
    device, _token = await online_device(stack, paho, "del-1")
    await ok(stack, "devices_SetProperty", {"deviceId": "del-1", "name": "p", "value": 1})
    assert await ok(stack, "devices_Delete", {"deviceId": "del-1"}) == {}
    assert await device.wait_disconnected(), "a deleted device's session ends"
    error_of(await invoke(stack, "devices_GetDetails", {"deviceId": "del-1"}), 404, "DEVICE_NOT_FOUND")
    error_of(await invoke(stack, "devices_Delete", {"deviceId": "del-1"}), 404, "DEVICE_NOT_FOUND")
    await stack.create_device("del-1")  # the same serial again starts with nothing
    assert await ok(stack, "devices_QueryProperties", {"deviceId": "del-1"}) == {"properties": {}}


@case("devices_SetName")
async def _set_name(stack: Stack, paho: Clients) -> None:
    await stack.create_device("nm-1")
    assert await ok(stack, "devices_SetName", {"deviceId": "nm-1", "name": "Kitchen"}) == {}
    assert (await stack.http.get("/api/devices/nm-1")).json()["name"] == "Kitchen"
    assert await ok(stack, "devices_SetName", {"deviceId": "nm-1"}) == {}  # name omitted: cleared
    assert "name" not in await ok(stack, "devices_GetDetails", {"deviceId": "nm-1"})
    error_of(await invoke(stack, "devices_SetName", {"deviceId": "nm-1", "name": "x" * 201}), 400, "INVALID")
    error_of(await invoke(stack, "devices_SetName", {"deviceId": "nope", "name": "a"}), 404, "DEVICE_NOT_FOUND")


@case("devices_QueryCommands")
async def _query_commands(stack: Stack, paho: Clients) -> None:
    await stack.create_device("qc-1")
    assert await ok(stack, "devices_QueryCommands", {"deviceId": "qc-1"}) == {"manifest": {"commands": []}}
    await stack.http.post(
        "/api/v1/devices/qc-1/manifest", json={"capabilities": [{"action": "open", "description": "Open it"}]}
    )
    assert await ok(stack, "devices_QueryCommands", {"deviceId": "qc-1"}) == {
        "manifest": {"commands": [{"name": "open", "description": "Open it"}]}
    }
    error_of(await invoke(stack, "devices_QueryCommands", {"deviceId": "ghost"}), 404, "DEVICE_NOT_FOUND")


# ---- device tokens --------------------------------------------------------------------------------


def forged(stack: Stack, **changes: Any) -> str:
    """A token signed with the server's own key, with some claims changed."""
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "tk-1", "tid": "default", "typ": "device", "iat": now, "exp": now + 60}
    claims.update(changes)
    return jwt.encode(claims, stack.core.tokens.key, algorithm=ALGORITHM)


@case("devices_IssueDeviceToken")
async def _issue_device_token(stack: Stack, paho: Clients) -> None:
    await stack.create_device("tk-1")
    issued = await ok(stack, "devices_IssueDeviceToken", {"deviceId": "tk-1", "claims": {"role": "sensor"}})
    assert list(issued) == ["jwt"]
    # validated offline with the published key, as an external system would
    jwks = (await stack.http.get("/.well-known/jwks.json")).json()
    [jwk] = jwks["keys"]
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("OKP", "Ed25519", "EdDSA")
    assert jwt.get_unverified_header(issued["jwt"])["kid"] == jwk["kid"]
    claims = jwt.decode(issued["jwt"], jwt.PyJWK(jwk).key, algorithms=["EdDSA"], issuer=ISSUER)
    assert claims["sub"] == "tk-1" and claims["claims"] == {"role": "sensor"}
    assert claims["exp"] - claims["iat"] == 3600
    short = await ok(stack, "devices_IssueDeviceToken", {"deviceId": "tk-1", "validForSecs": 5})
    short_claims = jwt.decode(short["jwt"], options={"verify_signature": False})
    assert short_claims["exp"] - short_claims["iat"] == 5
    error_of(await invoke(stack, "devices_IssueDeviceToken", {"deviceId": "tk-1", "validForSecs": 0}), 400, "INVALID")
    error_of(await invoke(stack, "devices_IssueDeviceToken", {"deviceId": "nope"}), 404, "DEVICE_NOT_FOUND")


@case("devices_ValidateDeviceToken")
async def _validate_device_token(stack: Stack, paho: Clients) -> None:
    await stack.create_device("tk-1")
    issued = (await ok(stack, "devices_IssueDeviceToken", {"deviceId": "tk-1", "claims": [1, 2]}))["jwt"]
    assert await ok(stack, "devices_ValidateDeviceToken", {"jwt": issued}) == {
        "result": "Valid",
        "deviceId": "tk-1",
        "claims": [1, 2],
    }
    head, payload, signature = issued.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    device = await stack.core.devices.get("tk-1")
    invalid = [
        f"{head}.{payload}.{flipped}",  # tampered signature
        f"{head}.{jwt.utils.base64url_encode(json.dumps({'sub': 'tk-2'}).encode()).decode()}.{signature}",  # tampered
        forged(stack, exp=int(time.time()) - 10, dct=device.created_at),  # expired
        forged(stack, tid="another-tenant", dct=device.created_at),  # foreign tenant
        forged(stack, typ="http_proxy", dct=device.created_at),  # another kind of token
        "not-a-jwt",
    ]
    assert await ok(stack, "devices_ValidateDeviceToken", {"jwt": forged(stack, dct=device.created_at)}) == {
        "result": "Valid",
        "deviceId": "tk-1",
        "claims": None,
    }  # the forger above holds our key: the control case that the others fail for their change alone
    for token in invalid:
        assert await ok(stack, "devices_ValidateDeviceToken", {"jwt": token}) == {"result": "Invalid"}, token
    await stack.http.delete("/api/devices/tk-1")
    assert await ok(stack, "devices_ValidateDeviceToken", {"jwt": issued}) == {"result": "Invalid"}  # deleted
    await stack.create_device("tk-1")  # the same serial again does not inherit the token
    assert await ok(stack, "devices_ValidateDeviceToken", {"jwt": issued}) == {"result": "Invalid"}
    error_of(await invoke(stack, "devices_ValidateDeviceToken", {}), 400, "INVALID")


# ---- certificates ---------------------------------------------------------------------------------


@case("devices_AddCertificate")
async def _add_certificate(stack: Stack, paho: Clients) -> None:
    await stack.create_device("ct-1")
    await stack.create_device("ct-2")
    added = await ok(stack, "devices_AddCertificate", {"deviceId": "ct-1", "fingerprint": FP_A.upper()})
    assert list(added) == ["certificateId"]
    active = await ok(stack, "devices_AddCertificate", {"deviceId": "ct-1", "fingerprint": FP_B, "status": "Active"})
    certs = (await ok(stack, "devices_GetDetails", {"deviceId": "ct-1"}))["certificates"]
    assert [(c["certificateId"], c["status"], c["fingerprint"]) for c in certs] == [
        (added["certificateId"], "Pending", FP_A),
        (active["certificateId"], "Active", FP_B),
    ]
    # the same fingerprint on a second device: Conflict on both
    colons = ":".join(FP_A[i : i + 2] for i in range(0, 64, 2))
    await ok(stack, "devices_AddCertificate", {"deviceId": "ct-2", "fingerprint": colons, "status": "Active"})
    for serial in ("ct-1", "ct-2"):
        statuses = {
            c["fingerprint"]: c["status"]
            for c in (await ok(stack, "devices_GetDetails", {"deviceId": serial}))["certificates"]
        }
        assert statuses[FP_A] == "Conflict", serial
    again = await invoke(stack, "devices_AddCertificate", {"deviceId": "ct-1", "fingerprint": FP_B})
    error_of(again, 409, "CONFLICT")
    error_of(await invoke(stack, "devices_AddCertificate", {"deviceId": "ct-1", "fingerprint": "xyz"}), 400, "INVALID")
    bad_status = await invoke(
        stack, "devices_AddCertificate", {"deviceId": "ct-1", "fingerprint": "ef" * 32, "status": "On"}
    )
    assert "Pending, Active, Rejected, Revoked, Conflict" in error_of(bad_status, 400, "INVALID")["error"]
    error_of(
        await invoke(stack, "devices_AddCertificate", {"deviceId": "no", "fingerprint": FP_A}), 404, "DEVICE_NOT_FOUND"
    )


@case("devices_DeleteCertificate")
async def _delete_certificate(stack: Stack, paho: Clients) -> None:
    await stack.create_device("ct-1")
    added = await ok(stack, "devices_AddCertificate", {"deviceId": "ct-1", "fingerprint": FP_A})
    assert await ok(stack, "devices_DeleteCertificate", {"certificateId": added["certificateId"]}) == {}
    assert (await ok(stack, "devices_GetDetails", {"deviceId": "ct-1"}))["certificates"] == []
    gone = await invoke(stack, "devices_DeleteCertificate", {"certificateId": added["certificateId"]})
    error_of(gone, 404, "CERTIFICATE_NOT_FOUND")


@case("devices_SetCertificateStatus")
async def _set_certificate_status(stack: Stack, paho: Clients) -> None:
    await stack.create_device("ct-1")
    cert_id = (await ok(stack, "devices_AddCertificate", {"deviceId": "ct-1", "fingerprint": FP_A}))["certificateId"]
    for status in ("Active", "Rejected", "Revoked", "Conflict", "Pending"):
        assert await ok(stack, "devices_SetCertificateStatus", {"certificateId": cert_id, "status": status}) == {}
        [cert] = (await ok(stack, "devices_GetDetails", {"deviceId": "ct-1"}))["certificates"]
        assert cert["status"] == status
    bad = await invoke(stack, "devices_SetCertificateStatus", {"certificateId": cert_id, "status": "active"})
    error_of(bad, 400, "INVALID")
    ghost = await invoke(stack, "devices_SetCertificateStatus", {"certificateId": "cert_x", "status": "Active"})
    error_of(ghost, 404, "CERTIFICATE_NOT_FOUND")


# ---- connections ----------------------------------------------------------------------------------


@case("devices_RegisterConnection")
async def _register_connection(stack: Stack, paho: Clients) -> None:
    await stack.create_device("cn-1")
    body = {"deviceId": "cn-1", "nodeId": "node-b", "connectionId": "conn-1"}
    assert await ok(stack, "devices_RegisterConnection", body) == {"connectionId": "conn-1"}
    error_of(await invoke(stack, "devices_RegisterConnection", body), 409, "CONFLICT")
    [entry] = (await ok(stack, "devices_QueryConnections", {"deviceId": "cn-1"}))["connections"]
    assert (entry["connectionId"], entry["nodeId"], entry["endedAt"], entry["endReason"]) == (
        "conn-1",
        "node-b",
        None,
        None,
    )
    assert (await ok(stack, "devices_Query"))["devices"][0]["isConnected"] is True
    error_of(await invoke(stack, "devices_RegisterConnection", {**body, "connectionId": "12"}), 400, "INVALID")
    error_of(await invoke(stack, "devices_RegisterConnection", {**body, "deviceId": "x"}), 404, "DEVICE_NOT_FOUND")
    error_of(await invoke(stack, "devices_RegisterConnection", {"deviceId": "cn-1", "nodeId": "n"}), 400, "INVALID")


@case("devices_UnregisterConnection")
async def _unregister_connection(stack: Stack, paho: Clients) -> None:
    await stack.create_device("cn-1")
    await ok(stack, "devices_RegisterConnection", {"deviceId": "cn-1", "nodeId": "node-b", "connectionId": "conn-1"})
    done = {"connectionId": "conn-1", "endReason": "NodeCrashed"}
    assert await ok(stack, "devices_UnregisterConnection", done) == {}
    [entry] = (await ok(stack, "devices_QueryConnections", {"deviceId": "cn-1"}))["connections"]
    assert entry["endReason"] == "NodeCrashed" and ISO.match(entry["endedAt"])
    assert (await ok(stack, "devices_Query"))["devices"][0]["isConnected"] is False
    error_of(await invoke(stack, "devices_UnregisterConnection", done), 409, "CONFLICT")
    bad = await invoke(stack, "devices_UnregisterConnection", {"connectionId": "conn-1", "endReason": "Crashed"})
    assert "Unknown, Disconnected, NodeCrashed, ServerShutdown" in error_of(bad, 400, "INVALID")["error"]
    ghost = await invoke(stack, "devices_UnregisterConnection", {"connectionId": "nope", "endReason": "Unknown"})
    error_of(ghost, 404, "CONNECTION_NOT_FOUND")


@case("devices_QueryConnections")
async def _query_connections(stack: Stack, paho: Clients) -> None:
    device, token = await online_device(stack, paho, "cn-2")
    await device.disconnect()
    again = paho("cn-2")
    assert await again.connect(stack.broker.mqtt_port, "cn-2", token) == 0
    await stack.core.ingest.flush()
    assert await wait_for(lambda: stack.core.presence.is_online("cn-2"))
    await asyncio.sleep(0.05)
    await stack.core.ingest.flush()
    entries = (await ok(stack, "devices_QueryConnections", {"deviceId": "cn-2"}))["connections"]
    assert len(entries) == 2
    newest, oldest = entries
    for entry in entries:
        assert entry.keys() == {"connectionId", "nodeId", "connectedAt", "endedAt", "endReason", "durationSecs"}
        assert entry["nodeId"] == stack.core.node_id and ISO.match(entry["connectedAt"])
    assert (newest["endedAt"], newest["endReason"]) == (None, None)
    assert oldest["endReason"] == "Disconnected" and ISO.match(oldest["endedAt"])
    active = (await ok(stack, "devices_QueryConnections", {"deviceId": "cn-2", "activeOnly": True}))["connections"]
    assert [e["connectionId"] for e in active] == [newest["connectionId"]]
    limited = (await ok(stack, "devices_QueryConnections", {"deviceId": "cn-2", "limit": 1}))["connections"]
    assert limited == [newest] or limited[0]["connectionId"] == newest["connectionId"]
    error_of(await invoke(stack, "devices_QueryConnections", {"deviceId": "cn-2", "limit": 0}), 400, "INVALID")
    error_of(await invoke(stack, "devices_QueryConnections", {"deviceId": "cn-2", "activeOnly": "y"}), 400, "INVALID")


# ---- HTTP proxy tokens ----------------------------------------------------------------------------


@case("devices_IssueHttpProxyToken")
async def _issue_http_proxy_token(stack: Stack, paho: Clients) -> None:
    await stack.create_device("px-1")
    issued = await ok(stack, "devices_IssueHttpProxyToken", {"deviceId": "px-1", "port": 8080})
    assert set(issued) == {"jwt", "url"}
    assert issued["url"] == f"{stack.base}/proxy/{issued['jwt']}/"
    bad_port = await invoke(stack, "devices_IssueHttpProxyToken", {"deviceId": "px-1", "port": 70000})
    error_of(bad_port, 400, "INVALID")
    bad_redirect = await invoke(stack, "devices_IssueHttpProxyToken", {"deviceId": "px-1", "redirect": "javascript:x"})
    error_of(bad_redirect, 400, "INVALID")
    error_of(await invoke(stack, "devices_IssueHttpProxyToken", {"deviceId": "zz"}), 404, "DEVICE_NOT_FOUND")


@case("devices_ValidateHttpProxyToken")
async def _validate_http_proxy_token(stack: Stack, paho: Clients) -> None:
    await stack.create_device("px-1")
    plain = (await ok(stack, "devices_IssueHttpProxyToken", {"deviceId": "px-1"}))["jwt"]
    assert await ok(stack, "devices_ValidateHttpProxyToken", {"jwt": plain}) == {
        "result": "Valid",
        "deviceId": "px-1",
        "port": 80,
    }
    named = await ok(stack, "devices_IssueHttpProxyToken", {"deviceId": "px-1", "hostname": "px.example", "port": 81})
    assert await ok(stack, "devices_ValidateHttpProxyToken", {"jwt": named["jwt"]}) == {
        "result": "Valid",
        "deviceId": "px-1",
        "hostname": "px.example",
        "port": 81,
    }
    device = await stack.core.devices.get("px-1")
    expired = forged(
        stack,
        sub="px-1",
        typ="http_proxy",
        dct=device.created_at,
        exp=int(time.time()) - 5,
        redirect="https://example.com/expired",
    )
    assert await ok(stack, "devices_ValidateHttpProxyToken", {"jwt": expired}) == {
        "result": "Invalid",
        "redirect": "https://example.com/expired",
    }
    assert await ok(stack, "devices_ValidateHttpProxyToken", {"jwt": "x.y.z"}) == {"result": "Invalid"}
    device_token = (await ok(stack, "devices_IssueDeviceToken", {"deviceId": "px-1"}))["jwt"]
    assert await ok(stack, "devices_ValidateHttpProxyToken", {"jwt": device_token}) == {"result": "Invalid"}


# ---- events and audit -----------------------------------------------------------------------------

EVENT = {
    "eventId": "ev-1",
    "category": "door",
    "severity": "Warning",
    "body": {"text": "left open"},
    "attributes": {"door": "front"},
    "emittedAt": "2026-01-02T03:04:05.678Z",
}


@case("devices_PublishEvents")
async def _publish_events(stack: Stack, paho: Clients) -> None:
    await stack.create_device("ev-d")
    app = await stack.app_socket()
    try:
        assert await ok(stack, "devices_PublishEvents", {"deviceId": "ev-d", "events": [EVENT]}) == {}
        pushed = await recv_until(app, "event", serial="ev-d")
    finally:
        await app.close()
    assert (pushed["eventId"], pushed["severity"], pushed["category"]) == ("ev-1", "Warning", "door")
    assert pushed["body"] == {"text": "left open"} and pushed["device_ts"] == 1767323045678
    history = (await stack.http.get("/api/history", params={"serial": "ev-d", "type": "event"})).json()["messages"]
    assert [m["eventId"] for m in history] == ["ev-1"]
    for field, value, where in (
        ("severity", "Notice", "events[0].severity"),
        ("emittedAt", "yesterday", "events[0].emittedAt"),
        ("attributes", [1], "events[0].attributes"),
        ("eventId", "", "events[0].eventId"),
    ):
        refused = await invoke(
            stack, "devices_PublishEvents", {"deviceId": "ev-d", "events": [{**EVENT, field: value}]}
        )
        assert error_of(refused, 400, "INVALID")["details"][0]["field"] == where
    no_body = {k: v for k, v in EVENT.items() if k != "body"}
    error_of(await invoke(stack, "devices_PublishEvents", {"deviceId": "ev-d", "events": [no_body]}), 400, "INVALID")
    error_of(await invoke(stack, "devices_PublishEvents", {"deviceId": "ev-d", "events": {}}), 400, "INVALID")


@case("devices_QueryEvents")
async def _query_events(stack: Stack, paho: Clients) -> None:
    device, _token = await online_device(stack, paho, "ev-q")
    await device.publish("nxg/ev-q/event", '{"type":"device_unlocked","source":"rfid"}')
    second = {**EVENT, "eventId": "ev-2", "severity": "Critical"}
    third = {k: v for k, v in {**EVENT, "eventId": "ev-3"}.items() if k != "category"}
    await ok(stack, "devices_PublishEvents", {"deviceId": "ev-q", "events": [second, third]})
    events = (await ok(stack, "devices_QueryEvents", {"deviceId": "ev-q"}))["events"]
    assert [e["eventId"] for e in events[:2]] == ["ev-3", "ev-2"]  # newest first
    assert events[1] == {
        "eventId": "ev-2",
        "category": "door",
        "severity": "Critical",
        "body": {"text": "left open"},
        "attributes": {"door": "front"},
        "emittedAt": "2026-01-02T03:04:05.678Z",
        "receivedAt": events[1]["receivedAt"],
    }
    assert ISO.match(events[1]["receivedAt"]) and "category" not in events[0]
    from_device = events[2]
    assert from_device["severity"] == "Info" and from_device["body"] == {"source": "rfid"}
    assert from_device["attributes"] == {} and from_device["eventId"].startswith("evt_")
    limited = (await ok(stack, "devices_QueryEvents", {"deviceId": "ev-q", "limit": 1}))["events"]
    assert [e["eventId"] for e in limited] == ["ev-3"]
    error_of(await invoke(stack, "devices_QueryEvents", {"deviceId": "ev-q", "limit": -1}), 400, "INVALID")


@case("devices_QueryAuditLog")
async def _query_audit_log(stack: Stack, paho: Clients) -> None:
    await stack.create_device("au-1")
    await ok(stack, "devices_SetName", {"deviceId": "au-1", "name": "A"})
    await invoke(stack, "devices_SetProperty", {"deviceId": "au-1", "name": "", "value": 1})  # refused: audited
    events = (await ok(stack, "devices_QueryAuditLog", {"deviceId": "au-1"}))["events"]
    by_event = {e["event"]: e for e in events}
    named = by_event["devices_SetName"]
    assert named.keys() == {"eventId", "actor", "event", "data", "createdAt"} and ISO.match(named["createdAt"])
    assert named["actor"] == {"actor": "User", "userId": "admin"}
    assert named["data"] == {"outcome": "ok", "detail": None}
    assert by_event["devices_SetProperty"]["data"]["outcome"] == "INVALID"
    assert "device.create" in by_event  # the registry's own records are there too
    assert [int(e["eventId"]) for e in events] == sorted((int(e["eventId"]) for e in events), reverse=True)


# ---- properties -----------------------------------------------------------------------------------


@case("devices_SetProperty")
async def _set_property(stack: Stack, paho: Clients) -> None:
    await stack.create_device("pr-1")
    base = {"deviceId": "pr-1", "name": "mode"}
    assert await ok(stack, "devices_SetProperty", {**base, "value": "eco"}) == {"result": "Set"}
    assert await ok(stack, "devices_SetProperty", {**base, "value": "on", "expectedVersion": 1}) == {"result": "Set"}
    assert await ok(stack, "devices_SetProperty", {**base, "value": "x", "expectedVersion": 1}) == {
        "result": "VersionConflict",
        "currentVersion": 2,
    }
    missing = {"deviceId": "pr-1", "name": "gone", "value": 1, "expectedVersion": 4}
    assert await ok(stack, "devices_SetProperty", missing) == {"result": "Deleted"}
    create_only = {"deviceId": "pr-1", "name": "fresh", "value": 1, "expectedVersion": 0}
    assert await ok(stack, "devices_SetProperty", create_only) == {"result": "Set"}
    assert await ok(stack, "devices_SetProperty", create_only) == {"result": "VersionConflict", "currentVersion": 1}
    error_of(await invoke(stack, "devices_SetProperty", base), 400, "INVALID")  # value required
    error_of(await invoke(stack, "devices_SetProperty", {**base, "value": 1, "expectedVersion": "1"}), 400, "INVALID")
    error_of(await invoke(stack, "devices_SetProperty", {**base, "value": 1, "protected": 1}), 400, "INVALID")
    big = {**base, "value": "x" * (stack.core.settings.max_payload_bytes + 1)}
    error_of(await invoke(stack, "devices_SetProperty", big), 400, "INVALID")
    error_of(
        await invoke(stack, "devices_SetProperty", {**base, "deviceId": "nn", "value": 1}), 404, "DEVICE_NOT_FOUND"
    )


@case("devices_GetProperty")
async def _get_property(stack: Stack, paho: Clients) -> None:
    await stack.create_device("pr-1")
    value = {"nested": [1, 2, {"a": None}]}
    await ok(stack, "devices_SetProperty", {"deviceId": "pr-1", "name": "cfg", "value": value, "protected": True})
    found = await ok(stack, "devices_GetProperty", {"deviceId": "pr-1", "name": "cfg"})
    assert found == {
        "result": "Found",
        "name": "cfg",
        "value": value,
        "protected": True,
        "version": 1,
        "lastUpdated": found["lastUpdated"],
    }
    assert ISO.match(found["lastUpdated"])
    assert await ok(stack, "devices_GetProperty", {"deviceId": "pr-1", "name": "nope"}) == {"result": "NotFound"}
    error_of(await invoke(stack, "devices_GetProperty", {"deviceId": "pr-1"}), 400, "INVALID")


@case("devices_RemoveProperty")
async def _remove_property(stack: Stack, paho: Clients) -> None:
    await stack.create_device("pr-1")
    await ok(stack, "devices_SetProperty", {"deviceId": "pr-1", "name": "a", "value": 1})
    assert await ok(stack, "devices_RemoveProperty", {"deviceId": "pr-1", "name": "a"}) == {"result": "Removed"}
    assert await ok(stack, "devices_RemoveProperty", {"deviceId": "pr-1", "name": "a"}) == {"result": "NotFound"}
    # CAS against a removed property: Deleted
    cas = {"deviceId": "pr-1", "name": "a", "value": 2, "expectedVersion": 1}
    assert await ok(stack, "devices_SetProperty", cas) == {"result": "Deleted"}


@case("devices_QueryProperties")
async def _query_properties(stack: Stack, paho: Clients) -> None:
    await stack.create_device("pr-1")
    assert await ok(stack, "devices_QueryProperties", {"deviceId": "pr-1"}) == {"properties": {}}
    await ok(stack, "devices_SetProperty", {"deviceId": "pr-1", "name": "a", "value": 1})
    await ok(stack, "devices_SetProperty", {"deviceId": "pr-1", "name": "b", "value": "x", "protected": True})
    props = (await ok(stack, "devices_QueryProperties", {"deviceId": "pr-1"}))["properties"]
    assert set(props) == {"a", "b"}
    assert {k: v for k, v in props["b"].items() if k != "lastUpdated"} == {
        "name": "b",
        "value": "x",
        "protected": True,
        "version": 1,
    }
