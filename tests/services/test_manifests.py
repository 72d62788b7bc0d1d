"""Manifests on a real core: validation (incl. the JSON Schemas inside), versions, the registry,
the check every command passes, critical actions with dry-run tokens, and outputSchema on acks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from nxg_mqtt.core import Core, open_core
from nxg_mqtt.errors import (
    CommandRejected,
    ConflictError,
    DryRunRequired,
    NotFoundError,
    PayloadRejected,
    ValidationError,
)
from nxg_mqtt.models import CommandStatus
from nxg_mqtt.protocol import MessageType
from nxg_mqtt.services.history import HistoryQuery
from tests.factories import make_settings

LIGHT = {
    "action": "light_on",
    "targets": ["l1", "l2"],
    "category": "light",
    "description": "Turn light on",
    "paramSchema": {
        "type": "object",
        "properties": {"brightness": {"type": "integer", "minimum": 0, "maximum": 100}},
        "required": ["brightness"],
    },
    "outputSchema": {"type": "object", "properties": {"level": {"type": "integer"}}, "required": ["level"]},
}
UNLOCK = {"action": "unlock", "category": "lock", "safetyClass": "critical", "supportsDryRun": True}
MANIFEST = {"capabilities": [LIGHT, UNLOCK]}


@asynccontextmanager
async def serving(tmp_path: Path, **changes: Any) -> AsyncIterator[Core]:
    async with open_core(make_settings(tmp_path, **changes), serve=True) as core:
        await core.devices.create("m1")
        await core.devices.create("m2")
        yield core


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    async with serving(tmp_path) as value:
        await value.manifests.put("m1", MANIFEST)
        yield value


async def ready(core: Core, serial: str) -> None:
    await core.presence.connected(serial, "mqtt", None)
    await core.presence.subscribed_commands(serial)


BAD_MANIFESTS = [
    ({}, "$", "'capabilities' is a required property"),
    ({"capabilities": [{"action": ""}]}, "$.capabilities[0].action", "should be non-empty"),
    ({"capabilities": [{"action": "a", "safetyClass": "deadly"}]}, "$.capabilities[0].safetyClass", "is not one of"),
    (
        {"capabilities": [{"action": "a", "paramSchema": {"type": "nope"}}]},
        "$.capabilities[0].paramSchema",
        "not a valid JSON Schema",
    ),
    (
        {"capabilities": [{"action": "a", "outputSchema": {"minimum": "x"}}]},
        "$.capabilities[0].outputSchema",
        "not a valid JSON Schema",
    ),
    ({"capabilities": [{"action": "a"}, {"action": "a"}]}, "$.capabilities[1].action", "declared twice"),
    ({"capabilities": [{"action": "_reboot"}]}, "$.capabilities[0].action", "protocol-internal"),
]


@pytest.mark.parametrize(("manifest", "path", "fragment"), BAD_MANIFESTS)
async def test_a_bad_manifest_is_refused_with_where_and_why(
    core: Core, manifest: Any, path: str, fragment: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        await core.manifests.put("m2", manifest)
    assert refused.value.code == "MANIFEST_INVALID" and refused.value.status == 400
    assert any(d["path"].startswith(path) and fragment in d["message"] for d in refused.value.details), (
        refused.value.details
    )
    assert await core.manifests.versions("m2") == []


async def test_every_change_is_a_new_version_and_old_ones_are_kept(core: Core) -> None:
    with pytest.raises(ConflictError):
        await core.manifests.put("m1", MANIFEST, create=True)
    with pytest.raises(NotFoundError) as none_yet:
        await core.manifests.put("m2", MANIFEST, create=False)
    assert none_yet.value.code == "MANIFEST_NOT_FOUND"
    second = await core.manifests.put("m1", {"version": 99, "capabilities": [LIGHT]}, create=False)
    assert second.version == 2  # the server numbers versions; the body's is ignored
    assert await core.manifests.versions("m1") == [1, 2]
    assert [c["action"] for c in (await core.manifests.get("m1", 1)).capabilities] == ["light_on", "unlock"]
    with pytest.raises(CommandRejected) as gone:
        await core.commands.submit("m1", "unlock")
    assert gone.value.code == "ACTION_NOT_IN_MANIFEST"
    # a device re-sending the manifest in force (at every boot) adds no version
    await core.manifests.from_device("m1", json.dumps({"capabilities": [LIGHT]}).encode())
    assert await core.manifests.versions("m1") == [1, 2]


async def test_a_bad_device_manifest_is_a_warning_event(core: Core) -> None:
    with pytest.raises(PayloadRejected):
        await core.manifests.from_device("m2", b'{"capabilities":[{"action":"a","paramSchema":{"type":7}}]}')
    await core.ingest.flush()
    [warning] = (await core.history.query(HistoryQuery("m2", MessageType.EVENT, 10, None))).messages
    assert warning["severity"] == "Warning" and warning["body"]["channel"] == "manifest"
    assert "paramSchema" in warning["body"]["error"]


async def test_the_registry_has_defaults_and_every_declared_action(core: Core) -> None:
    await core.manifests.put("m2", {"capabilities": [{"action": "garage_open", "category": "door"}]})
    registry = {entry["action"]: entry for entry in await core.manifests.registry()}
    assert {"light_on", "temp_set", "lock", "relay_on", "sensor_read", "unlock", "garage_open"} <= registry.keys()
    assert sorted(e["id"] for e in registry.values()) == list(range(1, len(registry) + 1))
    types = await core.manifests.types()
    assert "light_on" in types["light"] and types["door"] == ["garage_open"] and "temp_set" in types["climate"]


REJECTIONS = [
    ("m1", "light_off", None, {}, "ACTION_NOT_IN_MANIFEST", 400),
    ("m1", "light_on", "l9", {"brightness": 5}, "ACTION_NOT_IN_MANIFEST", 400),
    ("m1", "light_on", "l1", {"brightness": 500}, "PARAMS_INVALID", 400),
    ("m1", "_reboot", None, {}, "RESTRICTED_ACTION", 403),
]


@pytest.mark.parametrize(("serial", "action", "target", "params", "code", "status"), REJECTIONS)
async def test_commands_are_checked_against_the_manifest(
    core: Core, serial: str, action: str, target: str | None, params: dict[str, Any], code: str, status: int
) -> None:
    with pytest.raises(CommandRejected) as refused:
        await core.commands.submit(serial, action, target, params)
    assert (refused.value.code, refused.value.status) == (code, status)
    page, _ = await core.commands.page(serial)
    assert page == []  # nothing stored


async def test_params_invalid_lists_every_schema_error(core: Core) -> None:
    with pytest.raises(CommandRejected) as refused:
        await core.commands.submit("m1", "light_on", "l1", {"brightness": "x"})
    assert refused.value.details == [{"path": "$.brightness", "message": "'x' is not of type 'integer'"}]
    with pytest.raises(CommandRejected) as missing:
        await core.commands.submit("m1", "light_on", "l1", {})
    assert missing.value.details == [{"path": "$", "message": "'brightness' is a required property"}]


async def test_no_manifest_accepts_anything_unless_required(tmp_path: Path) -> None:
    async with serving(tmp_path) as core:
        assert (await core.commands.submit("m2", "anything")).status is CommandStatus.QUEUED
    async with serving(tmp_path / "strict", require_manifest=True) as core:
        with pytest.raises(CommandRejected) as refused:
            await core.commands.submit("m2", "anything")
        assert (refused.value.code, refused.value.status) == ("MANIFEST_NOT_FOUND", 400)


async def test_a_revoked_device_refuses_commands(core: Core) -> None:
    await core.store.db.conn.execute("UPDATE devices SET revoked = 1 WHERE serial = 'm2'")
    with pytest.raises(CommandRejected) as refused:
        await core.commands.submit("m2", "anything")
    assert (refused.value.code, refused.value.status) == ("DEVICE_REVOKED", 403)


async def test_a_critical_action_needs_its_token_which_works_once_and_only_there(core: Core) -> None:
    with pytest.raises(DryRunRequired) as first:
        await core.commands.submit("m1", "unlock", params={"door": 1})
    assert first.value.status == 409
    assert (await core.commands.page("m1"))[0] == []
    dry = await core.commands.dry_run("m1", "unlock", params={"door": 2})
    assert dry.critical and dry.token is not None and dry.token != first.value.token
    with pytest.raises(CommandRejected) as elsewhere:
        await core.commands.confirm("m2", dry.token)
    assert "another device" in elsewhere.value.message
    command = await core.commands.confirm("m1", dry.token)
    assert (command.action, command.params) == ("unlock", {"door": 2})  # bound to the dry run's params
    with pytest.raises(CommandRejected) as replay:
        await core.commands.confirm("m1", dry.token)
    assert replay.value.code == "DRY_RUN_TOKEN_INVALID" and "already used" in replay.value.message
    normal = await core.commands.dry_run("m1", "light_on", "l1", {"brightness": 3})
    assert normal.token is None and not normal.critical
    assert len((await core.commands.page("m1"))[0]) == 1  # only the confirmed one


async def test_a_token_expires(tmp_path: Path) -> None:
    async with serving(tmp_path, dry_run_token_s=0.2) as core:
        await core.manifests.put("m1", MANIFEST)
        dry = await core.commands.dry_run("m1", "unlock")
        assert dry.token is not None
        await asyncio.sleep(0.3)
        with pytest.raises(CommandRejected) as late:
            await core.commands.confirm("m1", dry.token)
        assert "expired" in late.value.message
        assert (await core.commands.page("m1"))[0] == []


async def test_an_ack_whose_result_breaks_output_schema_fails(core: Core) -> None:
    await ready(core, "m1")
    good = await core.commands.submit("m1", "light_on", "l1", {"brightness": 3})
    bad = await core.commands.submit("m1", "light_on", "l2", {"brightness": 4})
    no_result = await core.commands.submit("m1", "light_on", "l2", {"brightness": 5})
    await core.commands.on_ack(
        "m1", json.dumps({"t": "ack", "id": good.id, "ok": True, "result": {"level": 3}}).encode()
    )
    await core.commands.on_ack("m1", json.dumps({"t": "ack", "id": bad.id, "ok": True, "result": {"lvl": 4}}).encode())
    await core.commands.on_ack("m1", json.dumps({"t": "ack", "id": no_result.id, "ok": True}).encode())
    closed_good, closed_bad = await core.commands.get(good.id), await core.commands.get(bad.id)
    assert closed_good is not None and closed_good.status is CommandStatus.ACKED
    assert closed_bad is not None and closed_bad.status is CommandStatus.FAILED
    assert closed_bad.error is not None and "outputSchema" in closed_bad.error and "'level'" in closed_bad.error
    assert closed_bad.result == {"lvl": 4}
    closed_none = await core.commands.get(no_result.id)
    assert closed_none is not None and closed_none.status is CommandStatus.ACKED


async def test_history_pages_newest_first(core: Core) -> None:
    ids = [(await core.commands.submit("m2", "go", params={"n": n})).id for n in range(5)]
    first, cursor = await core.commands.page("m2", limit=2)
    assert [c.id for c in first] == ids[:2:-1][:2] and cursor is not None
    second, cursor = await core.commands.page("m2", limit=2, before=cursor)
    third, end = await core.commands.page("m2", limit=2, before=cursor)
    assert [c.id for c in first + second + third] == ids[::-1] and end is None
    with pytest.raises(ValidationError):
        await core.commands.page("m2", limit=0)
