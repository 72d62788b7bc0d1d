"""Compare-and-swap on device properties: concurrent writers in one process and in two processes
(two cores on one data directory, as the CLI and a server are) never lose an update."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nxg_mqtt.core import open_core
from nxg_mqtt.errors import ValidationError
from nxg_mqtt.services.properties import PropertyService, SetResult
from tests.factories import make_settings


async def cas_writer(props: PropertyService, serial: str, rounds: int) -> int:
    done = 0
    current = await props.get(serial, "counter")
    assert current is not None
    known = current.version
    while done < rounds:
        outcome = await props.set(serial, "counter", done, expected=known)
        if outcome.result is SetResult.SET:
            done += 1
            assert outcome.version == known + 1
            known += 1
        else:
            assert outcome.result is SetResult.VERSION_CONFLICT and outcome.version is not None
            known = outcome.version
    return done


async def test_ten_writers_in_two_processes_lose_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with open_core(settings) as first, open_core(settings) as second:
        await first.devices.create("cas-1")
        assert (await first.properties.set("cas-1", "counter", 0)).version == 1
        writers = [cas_writer((first if i % 2 else second).properties, "cas-1", 20) for i in range(10)]
        done = await asyncio.gather(*writers)
        final = await first.properties.get("cas-1", "counter")
        assert final is not None and final.version == 1 + sum(done) == 201


async def test_cas_variants_and_limits(tmp_path: Path) -> None:
    async with open_core(make_settings(tmp_path, max_payload_bytes=64)) as core:
        await core.devices.create("cas-2")
        props = core.properties
        assert (await props.set("cas-2", "p", 1, expected=5)).result is SetResult.DELETED
        assert (await props.set("cas-2", "p", 1, expected=0)).version == 1  # 0: create only if absent
        assert (await props.set("cas-2", "p", 2, expected=0)).result is SetResult.VERSION_CONFLICT
        assert (await props.set("cas-2", "p", 3, protected=True)).version == 2
        refused = await props.set("cas-2", "p", 4, by_device=True)
        assert refused.result is SetResult.REFUSED and refused.error is not None
        # a write without `protected` keeps the flag
        assert (await props.set("cas-2", "p", 5)).version == 3
        assert (await props.get("cas-2", "p")).protected is True  # type: ignore[union-attr]
        # a device cannot make its own property protected: the flag is the app's
        await props.set("cas-2", "mine", 1, by_device=True)
        assert (await props.get("cas-2", "mine")).protected is False  # type: ignore[union-attr]
        for name, expected in (("", None), ("x" * 129, None), ("a\nb", None), ("ok", -1), ("ok", True)):
            with pytest.raises(ValidationError):
                await props.set("cas-2", name, 1, expected=expected)
        with pytest.raises(ValidationError, match="larger than 64 bytes"):
            await props.set("cas-2", "big", "x" * 100)
