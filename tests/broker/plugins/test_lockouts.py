"""Lockouts limit one role's guesses and never shut out a device with a valid token (PROTOCOL §6).

Many devices share one public address behind NAT: whatever one bad client does from it (another
protocol level, wrong bridge secrets, wrong connection codes), a device with a valid token from
the same address is accepted. Wrong codes lock pairing from that address; wrong bridge secrets
lock the bridge login from that address only.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nxg_mqtt.mqtt.codec import Connack, Connect, encode_connect
from tests.broker.broker_clients import RawClient
from tests.broker.plugins.helpers import STACK_OVERRIDES, Stack, open_stack
from tests.factories import make_settings
from tests.mqtt_client import HOST

BRIDGE_LIMIT = 5  # connect_failures_per_minute in these tests: wrong bridge secrets before a lock
OTHER_ADDRESS = "127.0.0.2"  # another source address on the loopback network


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    settings = make_settings(tmp_path, **(STACK_OVERRIDES | {"connect_failures_per_minute": BRIDGE_LIMIT}))
    async with open_stack(settings) as s:
        yield s


async def connect(
    stack: Stack, client_id: str, username: str | None, password: str | None, *, source: str = HOST, level: int = 4
) -> int:
    """One CONNECT from `source`: the CONNACK return code."""
    raw = await RawClient.open_from(stack.port, source)
    try:
        name = "MQIsdp" if level == 3 else "MQTT"
        pw = None if password is None else password.encode()
        raw.send(encode_connect(Connect(client_id, True, 30, username, pw, protocol_name=name, protocol_level=level)))
        packet = await raw.recv()
        assert isinstance(packet, Connack)
        return packet.return_code
    finally:
        await raw.close()


async def paired(stack: Stack, serial: str) -> str:
    reply = await stack.pair(await stack.create_device(serial))
    return str(reply["token"])


async def test_bad_protocol_levels_never_lock_out_a_valid_token(stack: Stack) -> None:
    token = await paired(stack, "nat-a")
    for n in range(3 * BRIDGE_LIMIT):
        assert await connect(stack, f"v5-{n}", "nat-a", token, level=5) == 0x01
        assert await connect(stack, f"v3-{n}", "nat-a", token, level=3) == 0x01
    assert await connect(stack, "nat-a", "nat-a", token) == 0
    secret = stack.core.settings.internal_secret
    assert await connect(stack, "bridge-1", "bridge", secret) == 0
    assert await connect(stack, "p-1", "pair", await stack.core.devices.code("nat-a")) == 0


async def test_bridge_guesses_lock_only_the_bridge_login_from_that_address(stack: Stack) -> None:
    token = await paired(stack, "nat-b")
    secret = stack.core.settings.internal_secret
    guesses = [await connect(stack, f"guess-{n}", "bridge", f"guess-{n}") for n in range(BRIDGE_LIMIT + 2)]
    assert guesses == [4] * BRIDGE_LIMIT + [3, 3]
    assert await connect(stack, "bridge-1", "bridge", secret) == 3  # locked: even the right secret
    assert await connect(stack, "bridge-2", "bridge", secret, source=OTHER_ADDRESS) == 0
    assert await connect(stack, "nat-b", "nat-b", token) == 0  # devices from that address: unaffected
    assert await connect(stack, "p-1", "pair", await stack.core.devices.code("nat-b")) == 0


async def test_wrong_codes_lock_pairing_but_not_a_valid_token(stack: Stack) -> None:
    token = await paired(stack, "nat-c")
    code = await stack.core.devices.code("nat-c")
    limit = stack.core.settings.pair_failures_per_minute
    assert [await connect(stack, f"w{n}", "pair", "AAAA-AAAA") for n in range(limit)] == [4] * limit
    assert await connect(stack, "right", "pair", code) == 3  # pairing locked from this address
    assert await connect(stack, "right2", "pair", code, source=OTHER_ADDRESS) == 0
    assert await connect(stack, "nat-c", "nat-c", token) == 0
    secret = stack.core.settings.internal_secret
    assert await connect(stack, "bridge-1", "bridge", secret) == 0


async def test_stale_tokens_and_bad_levels_count_nowhere(stack: Stack) -> None:
    """A fleet reconnecting with stale tokens does not lock pairing or the bridge out either."""
    token = await paired(stack, "nat-d")
    await stack.core.devices.reset("nat-d")
    for n in range(3 * BRIDGE_LIMIT):
        assert await connect(stack, "nat-d", "nat-d", token) == 5
        assert await connect(stack, f"v5-{n}", "pair", "AAAA-AAAA", level=5) == 1
    assert await connect(stack, "bridge-1", "bridge", stack.core.settings.internal_secret) == 0
    assert await connect(stack, "p-1", "pair", await stack.core.devices.code("nat-d")) == 0


async def test_open_from_other_address_is_really_another_address(stack: Stack) -> None:
    """The tests above rely on the broker seeing `OTHER_ADDRESS` as the source."""
    raw = await RawClient.open_from(stack.port, OTHER_ADDRESS)
    try:
        await raw.connect("probe", username="bridge", password=stack.core.settings.internal_secret.encode())
        session = stack.broker.session("probe")
        assert session is not None and session.remote_address == OTHER_ADDRESS
    finally:
        await raw.close()


async def test_wrong_api_keys_lock_only_the_key_login_from_that_address(stack: Stack) -> None:
    token = await paired(stack, "nat-k")
    _, good = await stack.core.keys.create("integrator")
    guesses = [await connect(stack, f"kg-{n}", "key", f"nxg_guess-{n}") for n in range(BRIDGE_LIMIT + 2)]
    assert guesses == [4] * BRIDGE_LIMIT + [3, 3]
    assert await connect(stack, "k-1", "key", good) == 3  # locked: even a valid key
    assert await connect(stack, "k-2", "key", good, source=OTHER_ADDRESS) == 0
    assert await connect(stack, "nat-k", "nat-k", token) == 0  # devices from that address: unaffected
    assert await connect(stack, "bridge-k", "bridge", stack.core.settings.internal_secret) == 0


async def test_a_locked_out_address_gets_a_log_line_per_interval_not_per_connect(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """Every locked-out CONNECT is refused (0x03) and counted, but only the first of each interval
    per address is logged, the next line saying how many were left out; wrong codes, and
    refusals from another address, keep a line each."""
    caplog.set_level(logging.INFO, logger="nxg_mqtt.broker")
    limit = stack.core.settings.pair_failures_per_minute
    assert [await connect(stack, f"w{n}", "pair", "AAAA-AAAA", source=OTHER_ADDRESS) for n in range(limit)] == [
        4
    ] * limit
    locked_before = stack.broker.refused_by_code.get(3, 0)
    assert [await connect(stack, f"l{n}", "pair", "AAAA-AAAA", source=OTHER_ADDRESS) for n in range(6)] == [3] * 6
    assert stack.broker.refused_by_code[3] - locked_before == 6

    def lines(code: int) -> list[logging.LogRecord]:
        return [r for r in caplog.records if "CONNECT refused" in r.getMessage() and getattr(r, "connack", 0) == code]

    assert len(lines(4)) == limit
    assert len(lines(3)) == 1 and lines(3)[0].__dict__["peer"].startswith(OTHER_ADDRESS + ":")
    stack.broker.refusal_lines.interval = 0.0  # the interval has passed: the next refusal says what it left out
    assert await connect(stack, "l-next", "pair", "AAAA-AAAA", source=OTHER_ADDRESS) == 3
    assert len(lines(3)) == 2
    assert lines(3)[1].__dict__["unlogged"] == 5 and "5 more locked-out refusals" in lines(3)[1].getMessage()
