"""Signals: a change made by another process on the same data directory (the CLI) reaches the
serving process's live sessions, as a kind plus a RevokeReason."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nxg_mqtt.core import Core, open_core
from nxg_mqtt.models import CommandStatus, now_ms
from nxg_mqtt.protocol import RevokeReason, SignalKind
from nxg_mqtt.services.signals import BRIDGE_KINDS, SignalWatcher
from tests.factories import make_settings
from tests.mqtt_client import wait_for

WITHIN_S = 1.0  # PROTOCOL §6: CLI changes reach a running server within 1 s


def record_revocations(core: Core) -> list[tuple[str, RevokeReason]]:
    seen: list[tuple[str, RevokeReason]] = []

    async def listener(serial: str, why: RevokeReason) -> None:
        seen.append((serial, why))

    core.devices.on_revoked(listener)
    return seen


async def test_a_cli_reset_and_delete_reach_the_server_with_their_reason(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, signal_poll_s=0.05)
    async with open_core(settings, serve=True) as server:
        seen = record_revocations(server)
        async with open_core(settings) as cli:
            await cli.devices.create("g1")
            await cli.devices.reset("g1")
            assert await wait_for(lambda: seen == [("g1", RevokeReason.RESET)], WITHIN_S)
            await cli.devices.regenerate("g1")
            await cli.devices.delete("g1")
        assert await wait_for(lambda: len(seen) == 3, WITHIN_S)
        assert [why for _, why in seen] == [RevokeReason.RESET, RevokeReason.REGENERATE, RevokeReason.DELETE]
        assert all(isinstance(why, RevokeReason) for _, why in seen)


async def test_a_server_does_not_act_twice_on_its_own_change(tmp_path: Path) -> None:
    async with open_core(make_settings(tmp_path, signal_poll_s=0.05), serve=True) as server:
        seen = record_revocations(server)
        await server.devices.create("g2")
        await server.devices.reset("g2")
        assert seen == [("g2", RevokeReason.RESET)]
        await server.signals.poll()
        assert seen == [("g2", RevokeReason.RESET)]


async def test_the_signal_row_holds_the_kind_and_the_reason_apart(tmp_path: Path) -> None:
    async with open_core(make_settings(tmp_path, signal_poll_s=0.05)) as cli:
        await cli.devices.create("g3")
        await cli.devices.regenerate("g3")
        [signal] = await cli.store.signals.since(0)
    assert signal.kind is SignalKind.REVOKED and signal.reason is RevokeReason.REGENERATE
    assert signal.serial == "g3"


async def test_a_cli_command_is_dispatched_by_the_server(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, signal_poll_s=0.05)
    async with open_core(settings, serve=True) as server:
        await server.devices.create("g4")
        await server.presence.connected("g4", "mqtt", None)
        await server.presence.subscribed_commands("g4")
        async with open_core(settings) as cli:
            command = await cli.commands.submit("g4", "open", dispatch=False, source="cli")
            assert command.status is CommandStatus.QUEUED
        dispatched = False
        for _ in range(50):
            stored = await server.commands.get(command.id)
            if stored is not None and stored.status is CommandStatus.DISPATCHED:
                dispatched = True
                break
            await asyncio.sleep(0.02)
        assert dispatched


async def test_rows_of_unknown_kinds_are_skipped(tmp_path: Path) -> None:
    async with open_core(make_settings(tmp_path, signal_poll_s=0.05), serve=True) as server:
        seen = record_revocations(server)
        await server.devices.create("g5")
        await server.store.db.conn.execute(
            "INSERT INTO signals (tenant_id, kind, serial, created_at) VALUES (?, ?, ?, ?)",
            (server.store.tenant_id, "revoked:reset", "g5", now_ms()),  # the old encoding
        )
        await server.store.db.conn.execute(
            "INSERT INTO signals (tenant_id, kind, serial, created_at, reason) VALUES (?, ?, ?, ?, ?)",
            (server.store.tenant_id, "revoked", "g5", now_ms(), "no-such-reason"),
        )
        assert await server.signals.poll() == 0
        assert seen == []


async def test_a_bridge_watcher_handles_key_and_device_revocations_only(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, signal_poll_s=0.05)
    async with open_core(settings, writer=True) as bridge, open_core(settings) as cli:
        seen = record_revocations(bridge)
        forgotten: list[str] = []

        async def key_listener(key_id: str) -> None:
            forgotten.append(key_id)

        bridge.keys.on_revoked(key_listener)
        watcher = SignalWatcher(
            bridge.store, bridge.devices, bridge.commands, settings.signal_poll_s, bridge.keys, kinds=BRIDGE_KINDS
        )
        await watcher.start()
        await cli.store.signals.emit(SignalKind.COMMAND, "g4", now_ms())  # the broker process's job
        await cli.store.signals.emit(SignalKind.KEY_REVOKED, "key-1", now_ms())
        await cli.store.signals.emit(SignalKind.REVOKED, "g4", now_ms(), RevokeReason.RESET)
        assert await watcher.poll() == 2
        assert forgotten == ["key-1"] and seen == [("g4", RevokeReason.RESET)]
        await watcher.close()


async def test_an_admin_password_changed_by_another_process_is_seen_within_a_second(tmp_path: Path) -> None:
    """The serving process keeps the stored hash in memory (no store read per request); a new
    password set by another process reaches it through the `admin_password` signal."""
    from nxg_mqtt.services import credentials
    from nxg_mqtt.services.admin import ADMIN_PASSWORD_KEY

    settings = make_settings(tmp_path, signal_poll_s=0.05)
    async with open_core(settings, serve=True) as server, open_core(settings) as other:
        await server.admin.set("first-password")
        assert await server.admin.check("first-password")
        # replaced in the store without a signal: the server keeps using its copy
        await other.store.kv.set(ADMIN_PASSWORD_KEY, credentials.hash_password("sneaky-password"))
        await asyncio.sleep(0.2)
        assert await server.admin.check("first-password")
        await other.admin.set("second-password")  # writes the signal too

        async def switched() -> bool:
            return await server.admin.check("second-password") and not await server.admin.check("first-password")

        deadline = asyncio.get_running_loop().time() + WITHIN_S
        while not await switched():
            assert asyncio.get_running_loop().time() < deadline, "the new password was not seen within 1 s"
            await asyncio.sleep(0.05)
