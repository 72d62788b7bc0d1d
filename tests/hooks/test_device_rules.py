"""A device's login rules (`HookService.topics_of`) name every topic the ACL lets it use: the
credential table marks them complete (`COMPLETE`, `nxg_mqtt/hooks/credentials.py`) and the
Mosquitto plugin then denies any other topic of that device without asking. This checks the claim
against `topic_allowed` itself, over every topic of up to three levels made of the words that
matter (own and other serials, every channel word, wildcards, `$SYS`, pairing)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest

from nxg_mqtt.core import open_core
from nxg_mqtt.hooks.credentials import COMPLETE, CredentialFeed
from nxg_mqtt.hooks.service import Client, HookService
from nxg_mqtt.protocol import Role
from nxg_mqtt.services.access import AclAction, Grant, topic_allowed
from nxg_mqtt.settings import Settings
from nxg_mqtt.topics import PREFIX, Channel

SERIAL = "DEV-1"
WORDS = sorted(
    {PREFIX, SERIAL, "dev-1", "DEV-2", "pair", "$SYS", "+", "#", "", "x"}
    | {word for channel in Channel for word in channel.value.split("/")}
)


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[HookService]:
    async with open_core(settings, serve=True) as core:
        yield HookService(core)


def topics() -> list[str]:
    made = {"/".join(levels) for n in (1, 2, 3) for levels in itertools.product(WORDS, repeat=n)}
    made |= {f"{PREFIX}/{SERIAL}/{channel.value}" for channel in Channel}
    made |= {f"{PREFIX}/{SERIAL}/{channel.value}/x" for channel in Channel}
    return sorted(made)


async def test_a_devices_rules_are_all_the_acl_allows_it(service: HookService) -> None:
    grant = Grant(Role.DEVICE, SERIAL, serial=SERIAL)
    rules = await service.topics_of(grant, SERIAL)
    publish = {r["topic"] for r in rules if r["action"] == "publish"}
    subscribe = {r["topic"] for r in rules if r["action"] == "subscribe"}
    assert publish and subscribe, rules
    client = Client(SERIAL, grant)
    owner = service.core.tenants.owner
    checked = 0
    for topic in topics():
        assert await topic_allowed(client, topic, AclAction.PUBLISH, owner) == (topic in publish), topic
        for action in (AclAction.SUBSCRIBE, AclAction.RECEIVE):
            assert await topic_allowed(client, topic, action, owner) == (topic in subscribe), (topic, action)
        checked += 1
    assert checked > 1000


async def test_the_table_marks_a_devices_rules_complete(service: HookService) -> None:
    feed = CredentialFeed(service.core, service.topics_of)
    line = await feed._entry(SERIAL, "ab" * 32)
    assert line is not None
    rules = line.split(" ")[3].split(";")
    assert rules[-1] == COMPLETE
    assert f"p:{PREFIX}/%u/telemetry" in rules and f"s:{PREFIX}/%u/cmd" in rules
