"""The hook listener over real HTTP (httpx): EMQX 5 authn/authz shapes, the internal secret,
precise errors for bad bodies, and the same decisions as the embedded broker's plugins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from nxg_mqtt.core import Core, open_core
from nxg_mqtt.hooks.http import open_hook_listener
from nxg_mqtt.hooks.service import (
    ANSWERS_FIRST_S,
    CONNECTED_TOPIC,
    DISCONNECTED_TOPIC,
    PASSWORD_REFUSED_S,
    REFUSED_TOPIC,
    HookService,
)
from nxg_mqtt.settings import Settings


@dataclass
class Hooks:
    core: Core
    service: HookService
    http: httpx.AsyncClient


@pytest.fixture
async def hooks(settings: Settings) -> AsyncIterator[Hooks]:
    async with open_core(settings, serve=True) as core:
        service = HookService(core)
        async with (
            open_hook_listener(service, settings) as listener,
            httpx.AsyncClient(
                base_url=listener.url, headers={"Authorization": f"Bearer {settings.internal_secret}"}
            ) as http,
        ):
            yield Hooks(core, service, http)


async def auth(hooks: Hooks, username: str | None, password: str | None, clientid: str) -> dict[str, object]:
    body = {"username": username, "password": password, "clientid": clientid, "peerhost": "10.0.0.9"}
    response = await hooks.http.post("/mqtt/auth", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def acl(hooks: Hooks, username: str, clientid: str, topic: str, action: str) -> str:
    body = {"username": username, "clientid": clientid, "topic": topic, "action": action, "qos": 1}
    response = await hooks.http.post("/mqtt/acl", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["result"])


async def test_the_internal_secret_is_required(hooks: Hooks, settings: Settings) -> None:
    body = {"username": "bridge", "password": settings.internal_secret, "clientid": "b"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": settings.internal_secret}):
        response = await hooks.http.post("/mqtt/auth", json=body, headers={"Authorization": "", **headers})
        assert response.status_code == 401
        assert response.json()["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("/mqtt/auth", b"not json", "the body must be JSON"),
        ("/mqtt/auth", b"[1]", "the body must be a JSON object"),
        ("/mqtt/auth", b'{"username":"x","password":"y"}', "'clientid' must be a non-empty string"),
        ("/mqtt/auth", b'{"username":5,"clientid":"c"}', "'username' must be a non-empty string"),
        (
            "/mqtt/acl",
            b'{"clientid":"c","topic":"t","action":"all"}',
            "'action' must be one of publish, subscribe, receive",
        ),
        ("/mqtt/acl", b'{"clientid":"c","action":"publish"}', "'topic' must be a non-empty string"),
        ("/mqtt/connected", b"{}", "'clientid' must be a non-empty string"),
        ("/mqtt/disconnected", b'{"clientid":""}', "'clientid' must be a non-empty string"),
    ],
)
async def test_bad_bodies_are_400_with_the_reason(hooks: Hooks, path: str, body: bytes, error: str) -> None:
    response = await hooks.http.post(path, content=body)
    assert response.status_code == 400
    assert response.json() == {"error": error, "code": "HOOK_REQUEST_INVALID"}


async def test_auth_answers_in_emqx_shape_with_the_connack_code(hooks: Hooks, settings: Settings) -> None:
    assert await auth(hooks, "bridge", settings.internal_secret, "b1") == {"result": "allow", "is_superuser": True}
    device = await hooks.core.devices.create("H1")
    assert await auth(hooks, "pair", device.code, "boot-h1") == {"result": "allow", "is_superuser": False}
    wrong = await auth(hooks, "pair", "0000-0000", "boot-h1")
    assert wrong["result"] == "deny" and wrong["reason_code"] == 4
    assert (await auth(hooks, "pair", device.code, "a/b"))["reason_code"] == 2
    assert (await auth(hooks, "H1", "nxgt_stale", "H1"))["reason_code"] == 5
    assert (await auth(hooks, None, None, "anon"))["reason_code"] == 5
    assert (await auth(hooks, "bridge", "wrong", "b2"))["reason_code"] == 4


async def test_pairing_lockout_is_shared_with_the_embedded_broker(hooks: Hooks, settings: Settings) -> None:
    """The device service counts wrong codes per address for every transport: 0x03 after 10."""
    device = await hooks.core.devices.create("H2")
    for i in range(settings.pair_failures_per_minute):
        assert (await auth(hooks, "pair", "0000-0000", f"g{i}"))["reason_code"] == 4
    assert (await auth(hooks, "pair", device.code, "right"))["reason_code"] == 3


async def test_acl_is_the_protocol_table(hooks: Hooks) -> None:
    device = await hooks.core.devices.create("H3")
    paired = await hooks.core.devices.complete_pairing("H3", device.code, "test")
    login = await auth(hooks, "H3", paired.token, "H3")
    assert login["result"] == "allow"
    # the login lists the device's own topics as EMQX authn `acl` rules, each as the ACL decides
    listed = login["acl"]
    assert isinstance(listed, list)
    rules = {(r["action"], r["topic"]) for r in listed}
    assert all(r["permission"] == "allow" for r in listed)
    assert ("publish", "nxg/H3/telemetry") in rules and ("subscribe", "nxg/H3/cmd") in rules
    assert ("publish", "nxg/H3/cmd") not in rules and ("subscribe", "nxg/H3/telemetry") not in rules
    for action, topic in rules:
        assert await acl(hooks, "H3", "H3", topic, action) == "allow"
    assert await acl(hooks, "H3", "H3", "nxg/H3/telemetry", "publish") == "allow"
    assert await acl(hooks, "H3", "H3", "nxg/H3/cmd", "subscribe") == "allow"
    assert await acl(hooks, "H3", "H3", "nxg/H3/cmd", "publish") == "deny"  # server only
    assert await acl(hooks, "H3", "H3", "nxg/H4/telemetry", "publish") == "deny"
    assert await acl(hooks, "H3", "H3", "nxg/#", "subscribe") == "deny"
    assert await acl(hooks, "pair", "boot", "nxg/pair/boot/req", "publish") == "allow"
    assert await acl(hooks, "pair", "boot", "nxg/pair/other", "subscribe") == "deny"
    assert await acl(hooks, "bridge", "b", "$nxg/kick", "publish") == "allow"
    assert await acl(hooks, "H3", "H3", "$nxg/kick", "publish") == "deny"
    # a `key` login is unknown without its CONNECT: denied, never guessed
    assert await acl(hooks, "key", "k1", "nxg/H3/telemetry", "subscribe") == "deny"


async def test_a_client_id_belongs_to_one_principal(hooks: Hooks) -> None:
    """As on the embedded engine: a pairing session may not take a device's client id while
    the device holds it; the device itself may reclaim it."""
    device = await hooks.core.devices.create("H5")
    paired = await hooks.core.devices.complete_pairing("H5", device.code, "test")
    assert (await auth(hooks, "H5", paired.token, "H5"))["result"] == "allow"
    response = await hooks.http.post("/mqtt/connected", json={"username": "H5", "clientid": "H5", "conn": "c1"})
    assert response.json() == {"result": "ok"}
    other = await hooks.core.devices.create("H6")
    assert (await auth(hooks, "pair", other.code, "H5"))["reason_code"] == 2
    assert (await auth(hooks, "H5", paired.token, "H5"))["result"] == "allow"


async def test_presence_and_takeover(hooks: Hooks) -> None:
    device = await hooks.core.devices.create("H7")
    paired = await hooks.core.devices.complete_pairing("H7", device.code, "test")
    await auth(hooks, "H7", paired.token, "H7")
    await hooks.http.post("/mqtt/connected", json={"username": "H7", "clientid": "H7", "conn": "c1"})
    await hooks.service.drain()
    assert hooks.core.presence.is_online("H7")
    # a second connection takes over; the first one's disconnect is not the device going away
    await auth(hooks, "H7", paired.token, "H7")
    await hooks.http.post("/mqtt/connected", json={"username": "H7", "clientid": "H7", "conn": "c2"})
    await hooks.http.post("/mqtt/disconnected", json={"clientid": "H7", "conn": "c1"})
    await hooks.http.post("/mqtt/disconnected", json={"clientid": "H7", "reason": "takenover"})
    await hooks.service.drain()
    assert hooks.core.presence.is_online("H7")
    await hooks.http.post("/mqtt/disconnected", json={"clientid": "H7", "conn": "c2"})
    await hooks.service.drain()
    assert not hooks.core.presence.is_online("H7")


def test_serve_external_needs_a_broker_url(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from nxg_mqtt.cli import main

    assert main(["serve", "--broker", "external", "--data", str(tmp_path)]) == 1
    assert "--mqtt must look like mqtt://host:port" in capsys.readouterr().err
    assert main(["serve", "--broker", "emqx", "--data", str(tmp_path)]) == 2
    assert "expected one of embedded, mosquitto, external" in capsys.readouterr().err


async def test_an_allowed_connect_with_its_connection_name_is_the_connection_event(hooks: Hooks) -> None:
    """The Mosquitto plugin's one call per CONNECT: `conn` in /mqtt/auth marks the device online."""
    device = await hooks.core.devices.create("H8")
    paired = await hooks.core.devices.complete_pairing("H8", device.code, "test")
    body = {"username": "H8", "password": paired.token, "clientid": "H8", "peerhost": "10.0.0.9", "conn": "c1"}
    assert (await hooks.http.post("/mqtt/auth", json=body)).json()["result"] == "allow"
    await hooks.service.drain()
    assert hooks.core.presence.is_online("H8")
    body["password"] = "nxgt_wrong"  # a refused CONNECT is no connection event
    body["conn"] = "c2"
    assert (await hooks.http.post("/mqtt/auth", json=body)).json()["reason_code"] == 5
    await hooks.http.post("/mqtt/disconnected", json={"clientid": "H8", "conn": "c2"})
    await hooks.service.drain()
    assert hooks.core.presence.is_online("H8")
    await hooks.http.post("/mqtt/disconnected", json={"clientid": "H8", "conn": "c1"})
    await hooks.service.drain()
    assert not hooks.core.presence.is_online("H8")


async def test_a_lockout_answer_says_until_when(hooks: Hooks, settings: Settings) -> None:
    """A locked-out address's 0x03 names the seconds left (the Mosquitto plugin keeps that answer
    and asks nothing until then); a wrong code's 0x04 names none (the next login is asked)."""
    wrong = await auth(hooks, "pair", "0000-0000", "w0")
    assert wrong["reason_code"] == 4 and "retry_after_s" not in wrong
    for i in range(1, settings.pair_failures_per_minute):
        await auth(hooks, "pair", "0000-0000", f"w{i}")
    locked = await auth(hooks, "pair", "0000-0000", "w-locked")
    assert locked["reason_code"] == 3
    left = locked["retry_after_s"]
    assert isinstance(left, float | int) and settings.pair_lockout_s - 5 < left <= settings.pair_lockout_s
    # a device's token is never locked out: its refusal is 0x05 without a time
    stale = await auth(hooks, "H9", "nxgt_stale", "H9")
    assert stale["reason_code"] == 5 and "retry_after_s" not in stale


async def test_only_a_device_logins_refusal_may_be_kept_for_the_same_password(hooks: Hooks, settings: Settings) -> None:
    """A device login's 0x05 names how long the same user name, client id and password may get the
    same answer unasked (the Mosquitto plugin keeps it until that user's login changes); refusals
    that lockouts count (pairing codes, the bridge secret, API keys) and other codes never do."""
    await hooks.core.devices.create("H5")
    for username, password, clientid in (
        ("H5", "wrong-token", "H5"),  # a device that exists, not paired or a wrong token
        ("NOPE1", "nxgt_x", "NOPE1"),  # an unknown serial
        ("H5", "nxgt_x", "H5-other"),  # a client id other than the serial
    ):
        refused = await auth(hooks, username, password, clientid)
        assert refused["reason_code"] == 5, refused
        assert refused["password_refused_s"] == PASSWORD_REFUSED_S
        assert "retry_after_s" not in refused
    for username, password in (("pair", "0000-0000"), ("bridge", "wrong"), ("key", "nxgk_wrong")):
        refused = await auth(hooks, username, password, "x1")
        assert refused["result"] == "deny" and "password_refused_s" not in refused, refused
    # a login refused by the plugin from that answer is reported and counted like one asked
    denied = hooks.service.counters["auth_deny"]
    report = {"username": "H5", "clientid": "H5", "peerhost": "10.0.0.5", "conn": "0x5"}
    hooks.service.reported_many([(REFUSED_TOPIC, report), (REFUSED_TOPIC, report)])
    assert hooks.service.counters["auth_deny"] == denied + 2
    assert hooks.service.counters["reported_refusals"] == 2
    assert not hooks.core.presence.is_online("H5")


async def test_presence_work_waits_while_a_hook_answer_is_being_made(hooks: Hooks) -> None:
    """The broker is blocked on every hook answer: queued presence work (the plugin's reports of a
    CONNECT storm) runs after it, within `ANSWERS_FIRST_S` at most."""
    await hooks.core.devices.create("H7")
    presence = hooks.core.presence
    report = {"username": "H7", "clientid": "H7", "peerhost": "10.0.0.7", "conn": "0x1"}
    with hooks.service.answering():
        hooks.service.reported_many([(CONNECTED_TOPIC, report)])
        assert hooks.service.clients["H7"].connected  # this process's state at once
        await asyncio.sleep(ANSWERS_FIRST_S / 3)
        assert not presence.is_online("H7")  # the presence work has waited
    await hooks.service.drain()
    assert presence.is_online("H7")
    # and it does not wait for ever behind a broker that never stops asking
    with hooks.service.answering():
        hooks.service.reported_many([(DISCONNECTED_TOPIC, report)])
        await asyncio.sleep(ANSWERS_FIRST_S * 4)
        assert not presence.is_online("H7")
