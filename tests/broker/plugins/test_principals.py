"""Sessions of different principals never meet (issue 7: the session hijack through pairing).

The standalone product broker (`--allow-anonymous`: every NXG plugin, anonymous allowed) with real
clients. A victim of each role holds client id `vic-dev` (a device's serial); a CONNECT with that
client id from any other principal is refused with 0x02 and changes nothing: the victim stays
connected, keeps its stored session and its queued messages, and its presence does not move. Only
the device `vic-dev` itself gets its serial back from whoever named a session after it, and then
inherits nothing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nxg_mqtt.mqtt.codec import Publish, SubAck, encode_subscribe
from nxg_mqtt.protocol import Role
from tests.broker.broker_clients import RawClient, wait_for
from tests.broker.plugins.helpers import STACK_OVERRIDES, Stack, open_stack
from tests.factories import make_settings
from tests.mqtt_client import Clients

SERIAL = "vic-dev"  # the client id every victim holds


@dataclass
class World:
    stack: Stack
    token: str  # the device vic-dev's token
    victim_code: str  # the code a victim pairing session was opened with (device vp-dev)
    own_code: str  # the attacker's own valid code (device mine-dev)

    def creds(self, role: Role, *, attacker: bool) -> tuple[str | None, str | None]:
        if role is Role.DEVICE:
            return SERIAL, self.token
        if role is Role.PAIR:
            return "pair", self.own_code if attacker else self.victim_code
        if role is Role.BRIDGE:
            return "bridge", self.stack.core.settings.internal_secret
        return None, None

    async def online(self) -> bool:
        return (await self.stack.core.devices.get(SERIAL)).online


def topic_of(role: Role) -> str:
    """A topic the victim may receive on (so a hijacker would get its messages)."""
    return f"nxg/pair/{SERIAL}" if role is Role.PAIR else f"nxg/{SERIAL}/cmd"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    settings = make_settings(tmp_path, **(STACK_OVERRIDES | {"allow_anonymous": True}))
    async with open_stack(settings) as stack:
        reply = await stack.pair(await stack.create_device(SERIAL))
        victim_code = await stack.create_device("vp-dev")
        own_code = await stack.create_device("mine-dev")
        yield World(stack, str(reply["token"]), victim_code, own_code)


async def attempt(world: World, role: Role) -> int:
    """One CONNECT as `role` with the victim's client id and clean session 0: its return code."""
    username, password = world.creds(role, attacker=True)
    raw = await RawClient.open(world.stack.port)
    try:
        connack = await raw.connect(
            SERIAL, clean_session=False, username=username, password=None if password is None else password.encode()
        )
        if connack.return_code == 0:
            return 0
        assert not connack.session_present
        assert await raw.closed_by_peer(2.0)
        return connack.return_code
    finally:
        await raw.close()


ROLES = [Role.DEVICE, Role.PAIR, Role.BRIDGE, Role.ANONYMOUS]
OTHERS = [Role.PAIR, Role.BRIDGE, Role.ANONYMOUS]  # a device can only name its own serial
PAIRS = [
    pytest.param(victim, attacker, id=f"{victim}-victim-{attacker}-attacker")
    for victim in ROLES
    for attacker in OTHERS
    # same role: same principal (bridge, anonymous) takes over by design; pair/pair is another code
    if victim is not attacker or victim is Role.PAIR
]


@pytest.mark.parametrize(("victim_role", "attacker_role"), PAIRS)
async def test_other_principal_cannot_take_or_resume_a_session(
    world: World, paho: Clients, victim_role: Role, attacker_role: Role
) -> None:
    stack = world.stack
    watcher = await stack.bridge_client("nxg/+/presence")
    victim = paho(SERIAL, clean_session=False)
    username, password = world.creds(victim_role, attacker=False)
    assert await victim.connect(stack.port, username=username, password=password) == 0
    assert victim.session_present is False
    assert await victim.subscribe(topic_of(victim_role), 1) == [1]
    await watcher.drain()
    online_before = await world.online()
    assert online_before is (victim_role is Role.DEVICE)

    # connected victim: refused, the victim keeps its connection and its messages
    assert await attempt(world, attacker_role) == 0x02
    await stack.broker.publish(topic_of(victim_role), b'{"n":1}', qos=1)
    assert [m.payload for m in await victim.wait_messages(1)] == [b'{"n":1}']
    assert not victim.disconnected.is_set()
    session = stack.broker.session(SERIAL)
    assert session is not None and session.role is victim_role and session.connected
    assert await world.online() is online_before
    assert await watcher.no_message(0.3), "no presence change"

    # stored victim (pairing sessions are never stored): refused, the queue stays the victim's
    await victim.disconnect()
    assert await wait_for(lambda: stack.broker.connected_count == 1)  # the watcher
    stored = victim_role is not Role.PAIR
    assert (stack.broker.session(SERIAL) is not None) is stored
    await stack.broker.publish(topic_of(victim_role), b'{"n":2}', qos=1)
    await watcher.drain()
    expected = 0x02 if stored else 0
    assert await attempt(world, attacker_role) == expected
    assert await world.online() is False
    if not stored:
        return
    assert await watcher.no_message(0.3), "no presence change"
    back = paho(SERIAL, clean_session=False)
    assert await back.connect(stack.port, username=username, password=password) == 0
    assert back.session_present is True
    assert [m.payload for m in await back.wait_messages(1)] == [b'{"n":2}']


async def test_a_pairing_session_is_never_stored(world: World, paho: Clients) -> None:
    first = paho("pairer", clean_session=False)
    assert await first.connect(world.stack.port, username="pair", password=world.own_code) == 0
    assert first.session_present is False
    assert await first.subscribe("nxg/pair/pairer", 1) == [1]
    # the same principal (the same code) takes it over, and still finds nothing stored
    second = paho("pairer", clean_session=False)
    assert await second.connect(world.stack.port, username="pair", password=world.own_code) == 0
    assert second.session_present is False
    assert await wait_for(first.disconnected.is_set)
    session = world.stack.broker.session("pairer")
    assert session is not None and session.clean_session and not session.subscriptions
    await second.disconnect()
    assert await wait_for(lambda: world.stack.broker.session("pairer") is None)


@pytest.mark.parametrize(
    ("squatter_role", "connected"),
    [
        pytest.param(role, connected, id=f"{role}-{'connected' if connected else 'stored'}")
        for role in OTHERS
        for connected in (True, False)
        if connected or role is not Role.PAIR  # pairing sessions are never stored
    ],
)
async def test_a_device_gets_its_serial_back_and_inherits_nothing(
    world: World, paho: Clients, squatter_role: Role, connected: bool
) -> None:
    """Whoever names a session after a device's serial cannot keep the device out (0x02 would let
    any holder of a code lock any device out); the device closes it and starts afresh."""
    stack = world.stack
    squatter = paho(SERIAL, clean_session=False)
    username, password = world.creds(squatter_role, attacker=True)
    assert await squatter.connect(stack.port, username=username, password=password) == 0
    assert squatter.session_present is False
    assert await squatter.subscribe(topic_of(squatter_role), 1) == [1]
    if not connected:
        await squatter.disconnect()
        await stack.broker.publish(topic_of(squatter_role), b'{"queued":"for the squatter"}', qos=1)
    device = await RawClient.open(stack.port)
    try:
        connack = await device.connect(SERIAL, clean_session=False, username=SERIAL, password=world.token.encode())
        assert (connack.return_code, connack.session_present) == (0, False)
        assert await wait_for(squatter.disconnected.is_set)
        session = stack.broker.session(SERIAL)
        assert session is not None and session.role is Role.DEVICE
        assert not session.subscriptions and not session.queue and not session.inflight
        assert await wait_for(lambda: stack.broker.connected_count == 1)
        assert await world.online()
        device.send(encode_subscribe(1, [(topic_of(Role.DEVICE), 1)]))
        assert await device.recv() == SubAck(1, (1,))
        with pytest.raises(TimeoutError):
            await device.recv(0.3)  # nothing: not the squatter's queued message
    finally:
        await device.close()


async def test_presence_untouched_by_a_refused_pairing_hijack(world: World) -> None:
    """The reproduction of the issue: a paired device online with a command queued in flight."""
    stack = world.stack
    watcher = await stack.bridge_client("nxg/+/presence")
    device = await RawClient.open(stack.port)
    try:
        await device.connect(SERIAL, clean_session=False, username=SERIAL, password=world.token.encode())
        device.send(encode_subscribe(1, [(f"nxg/{SERIAL}/cmd", 1)]))
        assert await device.recv() == SubAck(1, (1,))
        assert json.loads((await watcher.next_message()).payload)["online"] is True
        await stack.broker.publish(f"nxg/{SERIAL}/cmd", b'{"t":"cmd","action":"unlock","params":{"pin":"1234"}}', qos=1)
        assert isinstance(await device.recv(), Publish)  # in flight: never acknowledged
        assert await attempt(world, Role.PAIR) == 0x02
        assert await watcher.no_message(0.5)
        assert await world.online()
        session = stack.broker.session(SERIAL)
        assert session is not None and len(session.inflight) == 1 and session.role is Role.DEVICE
    finally:
        await device.close()
