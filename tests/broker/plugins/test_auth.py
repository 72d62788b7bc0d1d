"""Pairing and login over MQTT (PROTOCOL §2, §6) with real paho clients."""

from __future__ import annotations

from nxg_mqtt.services.credentials import format_code
from tests.broker.plugins.helpers import Stack


async def test_pair_then_reconnect_with_token(stack: Stack) -> None:
    code = await stack.create_device("dev-a")
    reply = await stack.pair(code)
    assert reply["t"] == "pair_ok"
    assert reply["serial"] == "dev-a"
    token = str(reply["token"])
    assert token.startswith("nxgt_") and len(token) > 40
    device = stack.client("dev-a")
    assert await device.connect(stack.port, "dev-a", token) == 0
    raw = await stack.core.store.devices.raw("dev-a")
    assert raw is not None and token not in str(raw.values())  # only the hash is stored
    assert raw["paired"] == 1


async def test_code_is_case_insensitive_and_dash_optional(stack: Stack) -> None:
    code = await stack.create_device("dev-b")
    reply = await stack.pair(code.replace("-", "").lower())
    assert reply["t"] == "pair_ok"


async def test_wrong_code_is_0x04(stack: Stack) -> None:
    await stack.create_device("dev-c")
    client = stack.client("pair-x")
    assert await client.connect(stack.port, "pair", "ZZZZ-ZZZZ") == 4


async def test_pairing_client_id_must_be_one_topic_level(stack: Stack) -> None:
    code = await stack.create_device("dev-c2")
    client = stack.client("bad/id")
    assert await client.connect(stack.port, "pair", code) == 2


async def test_reset_gives_auth_reset_required_and_old_code_still_pairs(stack: Stack) -> None:
    device, token = await stack.device("dev-d")
    await stack.core.devices.reset("dev-d")
    assert await device.wait_disconnected(1.5), "reset must disconnect the device within 1 s"
    again = stack.client("dev-d")
    assert await again.connect(stack.port, "dev-d", token) == 5
    code = await stack.core.devices.code("dev-d")
    reply = await stack.pair(code)
    assert reply["t"] == "pair_ok"
    fresh = stack.client("dev-d")
    assert await fresh.connect(stack.port, "dev-d", str(reply["token"])) == 0


async def test_regenerate_refuses_old_code_and_new_code_pairs(stack: Stack) -> None:
    device, token = await stack.device("dev-e")
    old_code = await stack.core.devices.code("dev-e")
    regenerated = await stack.core.devices.regenerate("dev-e")
    assert await device.wait_disconnected(1.5)
    assert await stack.client("dev-e").connect(stack.port, "dev-e", token) == 5
    assert await stack.client("p-old").connect(stack.port, "pair", old_code) == 4
    reply = await stack.pair(format_code(regenerated.code))
    assert reply["t"] == "pair_ok"


async def test_delete_disconnects_and_forgets_credentials(stack: Stack) -> None:
    device, token = await stack.device("dev-f")
    code = await stack.core.devices.code("dev-f")
    await stack.core.devices.delete("dev-f")
    assert await device.wait_disconnected(1.5)
    assert await stack.client("dev-f").connect(stack.port, "dev-f", token) == 5
    assert await stack.client("p-del").connect(stack.port, "pair", code) == 4


async def test_device_login_refusals_are_0x05(stack: Stack) -> None:
    _, token = await stack.device("dev-g", subscribe=False)
    assert await stack.client("other-id").connect(stack.port, "dev-g", token) == 5  # client id ≠ serial
    assert await stack.client("nobody").connect(stack.port, "nobody", token) == 5  # unknown serial
    assert await stack.client("dev-g").connect(stack.port, "dev-g", "nxgt_wrong") == 5
    assert await stack.client("anon").connect(stack.port) == 5  # no credentials


async def test_bridge_secret_checked(stack: Stack) -> None:
    assert await stack.client("b1").connect(stack.port, "bridge", "not-the-secret") == 4
    assert await stack.client("b2").connect(stack.port, "bridge", stack.core.settings.internal_secret) == 0


async def test_repeated_wrong_codes_lock_the_address_out(stack: Stack) -> None:
    code = await stack.create_device("dev-h")
    results = []
    for attempt in range(10):
        results.append(await stack.client(f"w{attempt}").connect(stack.port, "pair", "AAAA-AAAA"))
    assert results == [4] * 10
    # now even the right code is refused from this address
    locked = await stack.client("right").connect(stack.port, "pair", code)
    assert locked != 0


async def test_re_pairing_invalidates_the_previous_token(stack: Stack) -> None:
    device, token = await stack.device("dev-i")
    code = await stack.core.devices.code("dev-i")
    reply = await stack.pair(code)
    assert reply["t"] == "pair_ok" and reply["token"] != token
    assert await device.wait_disconnected(1.5), "a session on the old token ends"
    assert await stack.client("dev-i").connect(stack.port, "dev-i", token) == 5


async def test_pairing_request_with_a_different_code_is_refused(stack: Stack) -> None:
    code = await stack.create_device("dev-j")
    client = stack.client("pj")
    assert await client.connect(stack.port, "pair", code) == 0
    await client.subscribe("nxg/pair/pj")
    await client.publish("nxg/pair/pj/req", '{"t":"pair","code":"0000-0000"}')
    reply = await client.next_message()
    assert b"pair_error" in reply.payload


async def test_stale_tokens_never_lock_an_address_out(stack: Stack) -> None:
    """A fleet reconnecting after a reset from one NAT address must not lock pairing out."""
    from tests.broker.broker_clients import RawClient

    _, token = await stack.device("dev-k", subscribe=False)
    await stack.core.devices.reset("dev-k")
    for _ in range(40):
        raw = await RawClient.open(stack.port)
        try:
            assert (await raw.connect("dev-k", username="dev-k", password=token.encode())).return_code == 5
        finally:
            await raw.close()
    reply = await stack.pair(await stack.core.devices.code("dev-k"))
    assert reply["t"] == "pair_ok"
    assert await stack.client("dev-k").connect(stack.port, "dev-k", str(reply["token"])) == 0
