"""The Mosquitto plugin's credential table (`nxg_mqtt/hooks/credentials.py`, `mosquitto/nxg_plugin.c`):
a device the core listed logs in without a blocking `/mqtt/auth` call, and nothing the core no
longer allows gets in from it. Real Mosquitto, the real plugin, the real serving process; the
hook service's counters say whether a login was asked about."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from websockets.asyncio.client import connect

from bridge.link import LinkDown
from nxg_mqtt.hooks.credentials import CREDENTIALS_TOPIC
from nxg_mqtt.hooks.service import KICK_TOPIC
from nxg_mqtt.hooks.stack import ForeignStack
from nxg_mqtt.services import credentials
from nxg_mqtt.settings import Settings
from tests.bridge.helpers import PASSWORD, recv_until, send_json
from tests.mosquitto.conftest import foreign_with_http
from tests.mosquitto.test_scale_out import start_second_process
from tests.mqtt_client import Clients, pair_over_mqtt, wait_for

NOT_AUTHORIZED = 5


@asynccontextmanager
async def foreign_stack(settings: Settings) -> AsyncIterator[tuple[ForeignStack, httpx.AsyncClient]]:
    async with foreign_with_http(settings) as (stack, http):
        # the link's first connect sent the (empty) snapshot
        assert await wait_for(lambda: stack.hooks.credentials.snapshots >= 1)
        yield stack, http


async def pair(stack: ForeignStack, http: httpx.AsyncClient, serial: str) -> str:
    response = await http.post("/api/devices", json={"serial": serial})
    assert response.status_code == 201, response.text
    reply = await pair_over_mqtt(stack.mqtt_port, response.json()["code"], "boot-" + serial, json.dumps({"t": "pair"}))
    assert reply["t"] == "pair_ok", reply
    return str(reply["token"])


async def online(http: httpx.AsyncClient, serial: str) -> bool:
    return bool((await http.get(f"/api/devices/{serial}")).json()["online"])


async def eventually(check: object, within_s: float = 5.0) -> bool:
    for _ in range(int(within_s / 0.02)):
        if await check():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.02)
    return False


async def test_a_device_paired_at_runtime_logs_in_without_an_auth_call(settings: Settings, paho: Clients) -> None:
    async with foreign_stack(settings) as (stack, http):
        token = await pair(stack, http, "C1")
        asked = stack.hooks.counters["auth_allow"] + stack.hooks.counters["auth_deny"]
        device = paho("C1")
        assert await device.connect(stack.mqtt_port, "C1", token) == 0
        # presence and the connection log come from the plugin's report, not from a call
        assert await eventually(lambda: online(http, "C1"))
        assert stack.hooks.counters["auth_allow"] + stack.hooks.counters["auth_deny"] == asked
        assert stack.hooks.counters["reported_connects"] >= 1
        assert await device.subscribe("nxg/C1/cmd") == [1]
        await device.publish("nxg/C1/telemetry", json.dumps({"temp": 3}))
        await device.disconnect()
        assert await eventually(lambda: _offline(http, "C1"))
        assert await stack.core.devices.connections("C1"), "the connection log has the login"
        # a wrong token: refused from the table (the core would say 0x05), counted as before
        assert await paho("C1").connect(stack.mqtt_port, "C1", token + "x") == NOT_AUTHORIZED
        assert await wait_for(lambda: stack.hooks.counters["auth_deny"] == 1)
        assert stack.hooks.counters["reported_refusals"] == 1  # not asked: the plugin's, reported
        # the right token under another client id: asked about (the core refuses it)
        assert await paho("C1-other").connect(stack.mqtt_port, "C1", token) == NOT_AUTHORIZED


async def _offline(http: httpx.AsyncClient, serial: str) -> bool:
    return not await online(http, serial)


async def test_queued_commands_reach_a_device_logged_in_from_the_table(settings: Settings, paho: Clients) -> None:
    async with foreign_stack(settings) as (stack, http):
        token = await pair(stack, http, "Q2")
        async with connect(f"ws://127.0.0.1:{stack.bridge.http_port}/ws/app?token={PASSWORD}") as app:
            await send_json(app, {"t": "cmd", "serial": "Q2", "target": "lock", "action": "open", "ref": "q"})
            accepted = await recv_until(app, "cmd_accepted")
            asked = stack.hooks.counters["auth_allow"]
            device = paho("Q2")
            assert await device.connect(stack.mqtt_port, "Q2", token) == 0
            assert await device.subscribe("nxg/Q2/cmd") == [1]
            command = json.loads((await device.next_message()).payload)
            assert command["id"] == accepted["id"]
            assert stack.hooks.counters["auth_allow"] == asked


@pytest.mark.parametrize("change", ["reset", "regenerate", "delete", "revoke", "rotate"])
async def test_a_revoked_token_is_refused_at_once_and_its_session_kicked(
    settings: Settings, paho: Clients, change: str
) -> None:
    async with foreign_stack(settings) as (stack, http):
        token = await pair(stack, http, "R1")
        asked = stack.hooks.counters["auth_allow"]
        device = paho("R1")
        assert await device.connect(stack.mqtt_port, "R1", token) == 0
        assert stack.hooks.counters["auth_allow"] == asked  # from the table
        started = time.monotonic()
        new_secret = None
        if change == "reset":
            assert (await http.post("/api/devices/R1/reset")).status_code == 200
        elif change == "regenerate":
            assert (await http.post("/api/devices/R1/regenerate")).status_code == 200
        elif change == "delete":
            assert (await http.delete("/api/devices/R1")).status_code == 200
        else:
            tenant = await stack.core.tenants.owner("R1")
            assert tenant is not None
            if change == "revoke":
                await stack.core.registration.revoke(tenant, "R1", actor="test")
            else:
                _, new_secret = await stack.core.registration.rotate(tenant, "R1", actor="test")
        assert await device.wait_disconnected(1.0)
        assert time.monotonic() - started < 1.0
        assert await paho("R1-again", clean_session=True).connect(stack.mqtt_port, "R1", token) == NOT_AUTHORIZED
        assert await paho("R1").connect(stack.mqtt_port, "R1", token) == NOT_AUTHORIZED
        if new_secret is not None:
            # the rotated secret was listed with the kick: it logs in without a call
            asked = stack.hooks.counters["auth_allow"]
            assert await paho("R1").connect(stack.mqtt_port, "R1", new_secret) == 0
            assert stack.hooks.counters["auth_allow"] == asked


async def test_only_the_core_may_feed_the_table(settings: Settings, paho: Clients) -> None:
    async with foreign_stack(settings) as (stack, http):
        token = await pair(stack, http, "E1")
        await pair(stack, http, "V1")
        evil = "nxgt_chosen-by-the-attacker"
        forged = f"put V1 V1 {credentials.token_hash(evil)} p:nxg/%u/telemetry"
        attacker = paho("E1")
        assert await attacker.connect(stack.mqtt_port, "E1", token) == 0
        await attacker.publish(CREDENTIALS_TOPIC, forged)
        await attacker.publish(KICK_TOPIC, "V1")
        # a pairing login may not either
        code = (await http.post("/api/devices", json={"serial": "P9"})).json()["code"]
        pairing = paho("boot-p9")
        assert await pairing.connect(stack.mqtt_port, "pair", code) == 0
        await pairing.publish(CREDENTIALS_TOPIC, forged)
        await asyncio.sleep(0.2)
        assert await paho("V1").connect(stack.mqtt_port, "V1", evil) == NOT_AUTHORIZED
        # nor read what the core sends there (hashes)
        assert await attacker.subscribe(CREDENTIALS_TOPIC) == [0x80]


async def test_the_snapshot_on_every_link_connect_lists_what_no_delta_told(settings: Settings, paho: Clients) -> None:
    async with foreign_stack(settings) as (stack, http):
        await pair(stack, http, "S1")
        # a token set behind the feed's back (no path of the product does this: every token is
        # handed out only after its delta was taken, `DeviceService.credentials_issued`)
        token = "nxgt_set-in-the-store"
        await stack.core.store.devices.set_token("S1", hashlib.sha256(token.encode()).hexdigest(), paired=True)
        asked = stack.hooks.counters["auth_allow"] + stack.hooks.counters["auth_deny"]
        # the table still lists the old hash: refused from it, without a call (what the ordering
        # guarantee makes safe), until the snapshot says otherwise
        assert await paho("S1").connect(stack.mqtt_port, "S1", token) == NOT_AUTHORIZED
        assert (
            stack.hooks.counters["auth_allow"]
            + stack.hooks.counters["auth_deny"]
            - stack.hooks.counters["reported_refusals"]
            == asked
        )
        # the serving process's link is dropped (the plugin kicks it) and comes back: a snapshot
        snapshots = stack.hooks.credentials.snapshots
        with contextlib.suppress(LinkDown):  # it is gone before its PUBACK
            await stack.core.outbox.publish(KICK_TOPIC, stack.worker.client_id.encode(), qos=1)
        assert await wait_for(lambda: stack.hooks.credentials.snapshots > snapshots, 10)
        asked = stack.hooks.counters["auth_allow"]
        assert await paho("S1").connect(stack.mqtt_port, "S1", token) == 0
        assert stack.hooks.counters["auth_allow"] == asked


async def test_a_serving_process_that_starts_sends_its_snapshot(settings: Settings, paho: Clients) -> None:
    async with foreign_stack(settings) as (stack, http):
        await pair(stack, http, "S2")
        token = "nxgt_set-while-no-process-listened"
        await stack.core.store.devices.set_token("S2", hashlib.sha256(token.encode()).hexdigest(), paired=True)
        # a second serving process on the same broker and store: its link's connect sends a snapshot
        second = await start_second_process(settings, stack.mqtt_port)
        try:
            # once its snapshot is through, the token logs in without a call (polled: the snapshot
            # runs in the other process; before it the table's old hash refuses it)
            accepted = False
            for _ in range(40):
                asked = stack.hooks.counters["auth_allow"]
                client = paho("S2")
                accepted = await client.connect(stack.mqtt_port, "S2", token) == 0
                if accepted:
                    await client.disconnect()
                    if stack.hooks.counters["auth_allow"] == asked:
                        break
                await asyncio.sleep(0.25)
            assert accepted
            assert stack.hooks.counters["auth_allow"] == asked
        finally:
            second.terminate()
            await second.wait()


class _Unreachable:
    """The feed's link as a link down looks to it (the real link raises the same `LinkDown`)."""

    async def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> int:
        raise LinkDown("the MQTT broker is not reachable")


async def test_a_token_whose_credential_the_broker_did_not_take_is_not_handed_out(
    settings: Settings, paho: Clients
) -> None:
    """The ordering guarantee's other half: the plugin refuses a listed device's other tokens
    itself, so a token is handed out only after its delta was taken. If it cannot be sent, pairing
    answers an error (over MQTT and `/ws/gateway`) and the device pairs again later; a token
    issued once the link is back logs in on its first try."""
    async with foreign_stack(settings) as (stack, http):
        await pair(stack, http, "U1")
        code = (await http.get("/api/devices/U1/code")).json()["code"]
        stack.hooks.credentials.attach(_Unreachable())
        try:
            reply = await pair_over_mqtt(stack.mqtt_port, code, "boot-U1", json.dumps({"t": "pair"}))
            assert reply["t"] == "pair_error" and "token" not in reply, reply
            async with connect(f"ws://127.0.0.1:{stack.bridge.http_port}/ws/gateway") as gateway:
                await send_json(gateway, {"t": "pair", "code": code})
                answer = await recv_until(gateway, "pair_error")
                assert "token" not in answer
        finally:
            stack.hooks.credentials.attach(stack.worker.link)
        token = await pair(stack, http, "U2")
        assert await paho("U2").connect(stack.mqtt_port, "U2", token) == 0
        reply = await pair_over_mqtt(stack.mqtt_port, code, "boot-U1b", json.dumps({"t": "pair"}))
        assert reply["t"] == "pair_ok", reply
        assert await paho("U1").connect(stack.mqtt_port, "U1", str(reply["token"])) == 0


async def test_a_registration_whose_secret_the_broker_did_not_take_leaves_no_device(
    settings: Settings, paho: Clients
) -> None:
    """Registration hands out a secret, so it too waits for the plugin to take the hash. If it
    cannot, the answer is 502 `GATEWAY_ERROR` and the half-made device is gone (nobody can ever
    hold its secret); once the link is back a registration's secret logs in on its first try."""
    async with foreign_stack(settings) as (stack, http):
        before = (await http.get("/api/v1/devices")).json()
        stack.hooks.credentials.attach(_Unreachable())
        try:
            response = await http.post("/api/v1/device/register", json={"device_type": "esp32"})
        finally:
            stack.hooks.credentials.attach(stack.worker.link)
        assert response.status_code == 502 and response.json()["code"] == "GATEWAY_ERROR", response.text
        assert (await http.get("/api/v1/devices")).json() == before
        response = await http.post("/api/v1/device/register", json={"device_type": "esp32"})
        assert response.status_code == 201, response.text
        registered = response.json()
        serial = registered["device_id"]
        assert await paho(serial).connect(stack.mqtt_port, serial, registered["device_secret"]) == 0


async def test_a_listed_devices_foreign_topics_are_denied_without_a_call(settings: Settings, paho: Clients) -> None:
    """Its rules are all it may use (marked complete): a device publishing or subscribing outside
    them is denied by the plugin itself, so it cannot stop the broker's thread once a message."""
    async with foreign_stack(settings) as (stack, http):
        token = await pair(stack, http, "F1")
        await pair(stack, http, "F2")
        device = paho("F1")
        assert await device.connect(stack.mqtt_port, "F1", token) == 0
        counters = stack.hooks.counters
        asked = counters["acl_allow"] + counters["acl_deny"]
        for i in range(20):
            await device.publish("nxg/F2/telemetry", json.dumps({"temp": i}))  # another device's
            await device.publish("nxg/F1/cmd", json.dumps({"id": f"c{i}"}))  # the server's topic
            await device.publish(f"made/up/{i}", "x")
        for foreign in ("nxg/F2/cmd", "nxg/#", "nxg/+/telemetry", "$SYS/#"):
            assert await device.subscribe(foreign) == [0x80], foreign
        # (checked before its own subscription: the plugin reports that one to the core afterwards)
        assert counters["acl_allow"] + counters["acl_deny"] == asked, "no topic check was asked about"
        # its own topics still work, from its rules
        assert await device.subscribe("nxg/F1/cmd") == [1]
        await device.publish("nxg/F1/telemetry", json.dumps({"temp": 99}))

        async def stored() -> bool:
            rows = (await http.get("/api/history", params={"serial": "F1", "type": "telemetry"})).json()
            return bool(rows["messages"])

        assert await eventually(stored)
        # published after the foreign ones on the same connection: those were dropped, not stored
        other = (await http.get("/api/history", params={"serial": "F2", "type": "telemetry"})).json()
        assert other["messages"] == []
        await device.disconnect()
