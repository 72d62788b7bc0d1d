"""What the Mosquitto plugin (`mosquitto/nxg_plugin.c`) keeps per connection and per address: the
core's lockout answers (a locked-out address's pairing logins are refused without a hook call,
and only those) and the superuser status of the core's own logins (per connection, not per client
id). Real Mosquitto, the real plugin, the real serving process; the hook service's counters say
whether the broker asked."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from nxg_mqtt.settings import Settings
from tests.mosquitto.test_credential_table import eventually, foreign_stack, online, pair
from tests.mqtt_client import Clients, wait_for

SERVER_UNAVAILABLE, BAD_CREDENTIALS, NOT_AUTHORIZED = 3, 4, 5


async def test_a_locked_out_address_is_refused_without_a_call_but_a_valid_token_gets_in(
    settings: Settings, paho: Clients
) -> None:
    lock_s = 2.0
    settings = dataclasses.replace(settings, pair_lockout_s=lock_s)
    async with foreign_stack(settings) as (stack, http):
        token = await pair(stack, http, "LK1")
        code = (await http.post("/api/devices", json={"serial": "LK2"})).json()["code"]
        port = stack.mqtt_port
        counters = stack.hooks.counters

        def asked() -> int:
            return counters["auth_allow"] + counters["auth_deny"]

        for i in range(settings.pair_failures_per_minute):
            assert await paho(f"guess{i}").connect(port, "pair", "0000-0000") == BAD_CREDENTIALS
        # the core's answer: locked, until `lock_s` from now; the plugin keeps it
        before = asked()
        locked_at = time.monotonic()
        assert await paho("locked").connect(port, "pair", "0000-0000") == SERVER_UNAVAILABLE
        assert asked() == before + 1
        # from now on the plugin answers pairing logins from this address itself: 0x03, no call,
        # the right code included (the core would say the same)
        for i in range(5):
            assert await paho(f"again{i}").connect(port, "pair", "1111-1111") == SERVER_UNAVAILABLE
        assert await paho("right").connect(port, "pair", code) == SERVER_UNAVAILABLE
        assert asked() == before + 1
        # PROTOCOL §6: a lockout never refuses a valid device token, from the same address
        assert await paho("LK1").connect(port, "LK1", token) == 0
        # and every other login is still the core's decision, asked about
        assert await paho("LK9").connect(port, "LK9", "nxgt_wrong") == NOT_AUTHORIZED
        assert await paho("core-2").connect(port, "bridge", settings.internal_secret) == 0
        assert asked() == before + 3
        # once the lockout is over the plugin asks again, and the core lets the right code in
        await asyncio.sleep(max(0.0, locked_at + lock_s + 0.2 - time.monotonic()))
        assert await paho("right-later").connect(port, "pair", code) == 0
        assert asked() == before + 4


async def test_a_superuser_login_taken_over_keeps_its_status_after_the_old_connection_goes(
    settings: Settings, paho: Clients
) -> None:
    """The core's link, kicked and logged in again under the same client id: the old connection's
    disconnect arrives after the new login and must not make the new one a client to ask about."""
    async with foreign_stack(settings) as (stack, _http):
        port = stack.mqtt_port
        counters = stack.hooks.counters
        old = paho("nxg-core-x")
        assert await old.connect(port, "bridge", settings.internal_secret) == 0
        new = paho("nxg-core-x")
        assert await new.connect(port, "bridge", settings.internal_secret) == 0
        assert await old.wait_disconnected()  # taken over
        await asyncio.sleep(0.2)  # the old connection's disconnect event has run
        acl_asked = counters["acl_allow"] + counters["acl_deny"]
        # topics nobody asked about before: without the status each would be an /mqtt/acl call
        for i in range(3):
            assert await new.subscribe(f"su/{i}") == [1]
            await new.publish(f"su/{i}", b"x")
        assert await wait_for(lambda: len(new.received) >= 3)
        assert counters["acl_allow"] + counters["acl_deny"] == acl_asked


async def test_reports_of_many_logins_at_once_make_every_device_online_then_offline(
    settings: Settings, paho: Clients
) -> None:
    """Logins from the credential table at the same moment: their `$nxg/connected` reports reach
    the serving process in a few reads and are applied as batches (`HookService.reported_many`,
    `PresenceService.apply`); every device is online, then offline, with its connection logged."""
    async with foreign_stack(settings) as (stack, http):
        serials = [f"RB{i}" for i in range(12)]
        tokens = [await pair(stack, http, serial) for serial in serials]
        asked = stack.hooks.counters["auth_allow"] + stack.hooks.counters["auth_deny"]
        reported = stack.hooks.counters["reported_connects"]
        devices = [paho(serial) for serial in serials]
        codes = await asyncio.gather(
            *(d.connect(stack.mqtt_port, s, t) for d, s, t in zip(devices, serials, tokens, strict=True))
        )
        assert codes == [0] * len(serials)
        assert stack.hooks.counters["auth_allow"] + stack.hooks.counters["auth_deny"] == asked  # no calls

        async def all_online(expected: bool) -> bool:
            states = await asyncio.gather(*(online(http, s) for s in serials))
            return all(state is expected for state in states)

        assert await eventually(lambda: all_online(True))
        assert stack.hooks.counters["reported_connects"] == reported + len(serials)
        await asyncio.gather(*(d.disconnect() for d in devices))
        assert await eventually(lambda: all_online(False))
        await stack.core.ingest.flush()
        for serial in serials:
            [entry] = await stack.core.devices.connections(serial)
            assert entry.ended_at is not None and entry.reason == "disconnected", entry


async def test_a_storm_of_wrong_tokens_and_codes_asks_once_per_password_and_lets_valid_tokens_in(
    settings: Settings, paho: Clients
) -> None:
    """The bench's storm in small, from one address: wrong tokens of a listed device are refused
    from the credential table, the same wrong token of an unlisted serial is asked about once (the
    plugin keeps the core's 0x05 for that exact login), wrong pairing codes are asked until the
    lockout; meanwhile and afterwards a valid token from that address gets in (PROTOCOL §6),
    a token issued a moment ago logs in on its first try even for a serial whose wrong tokens
    were refused just before (ST2 does not exist during the storm), and a reset token is refused.
    Every refusal is counted."""
    bad = "127.0.0.2"
    async with foreign_stack(settings) as (stack, http):
        token = await pair(stack, http, "ST1")
        port = stack.mqtt_port
        counters = stack.hooks.counters

        def asked() -> int:
            return counters["auth_allow"] + counters["auth_deny"] - counters["reported_refusals"]

        before, denied = asked(), counters["auth_deny"]
        wrong = "wrong-token-" + "x" * 20
        for i in range(8):
            assert await paho("ST1").connect(port, "ST1", wrong, source=bad) == NOT_AUTHORIZED
            assert await paho("ST2").connect(port, "ST2", wrong, source=bad) == NOT_AUTHORIZED
            assert await paho(f"g{i}").connect(port, "pair", "ZZZZ-ZZZZ", source=bad) == BAD_CREDENTIALS
            if i == 4:
                # during the storm, from the same address: the valid token is the core's to allow
                assert await paho("ST1").connect(port, "ST1", token, source=bad) == 0
        # no call for the listed device, one for the unlisted serial's wrong token, one per code
        assert asked() == before + 1 + 8
        # the plugin's own refusals reach the core's count (reported, not waited for)
        assert await wait_for(lambda: counters["auth_deny"] == denied + 24)
        assert counters["reported_refusals"] == 15
        # another wrong token of the unlisted serial is asked about: only that password was kept
        assert await paho("ST2").connect(port, "ST2", wrong + "y", source=bad) == NOT_AUTHORIZED
        assert asked() == before + 10
        # after the storm: the valid token from that address still gets in (from the table)
        device = paho("ST1")
        assert await device.connect(port, "ST1", token, source=bad) == 0
        assert await eventually(lambda: online(http, "ST1"))
        # ST2 paired a moment ago: its new token logs in on its first try
        new_token = await pair(stack, http, "ST2")
        assert await paho("ST2").connect(port, "ST2", new_token, source=bad) == 0
        # the wrong token of before is still refused: ST2 is listed now (the pairing's delta,
        # which also dropped the refusal kept for ST2), so from the table, without a call
        paired, refused = asked(), counters["reported_refusals"]
        assert await paho("ST2").connect(port, "ST2", wrong, source=bad) == NOT_AUTHORIZED
        assert asked() == paired
        assert await wait_for(lambda: counters["reported_refusals"] == refused + 1)
        # a reset token is refused
        assert (await http.post("/api/devices/ST1/reset")).status_code == 200
        assert await device.wait_disconnected()
        assert await paho("ST1").connect(port, "ST1", token, source=bad) == NOT_AUTHORIZED
        # a change of an unlisted device's login (here a reset: a `del` delta and a kick) drops
        # what the plugin kept for it: the same wrong token is asked about again
        assert (await http.post("/api/devices", json={"serial": "ST3"})).status_code == 201
        for _ in range(2):
            assert await paho("ST3").connect(port, "ST3", wrong, source=bad) == NOT_AUTHORIZED
        kept = asked()
        assert (await http.post("/api/devices/ST3/reset")).status_code == 200
        assert await paho("ST3").connect(port, "ST3", wrong, source=bad) == NOT_AUTHORIZED
        assert asked() == kept + 1
        assert await paho("ST3").connect(port, "ST3", wrong, source=bad) == NOT_AUTHORIZED
        assert asked() == kept + 1
