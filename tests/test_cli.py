"""The `nxg-mqtt` CLI as a user runs it: a separate process on the same data directory as a
running broker, whose live sessions see the change within 1 s."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.bridge.helpers import open_stack, pair_gateway, recv_until, send_json
from tests.cli_process import CLI, start_cli, stop_cli
from tests.factories import make_settings
from tests.mqtt_client import TestClient, pair_over_mqtt


def run_cli(data: Path, *args: str, ok: bool = True) -> dict[str, object]:
    proc = subprocess.run([*CLI, *args, "--data", str(data)], capture_output=True, text=True, timeout=30)
    if ok:
        assert proc.returncode == 0, proc.stderr
        result: dict[str, object] = json.loads(proc.stdout)
        return result
    assert proc.returncode != 0
    error: dict[str, object] = json.loads(proc.stderr.strip().splitlines()[-1])
    return error


@pytest.fixture
async def broker_process(tmp_path: Path) -> AsyncIterator[tuple[Path, int]]:
    env = {**os.environ, "NXG_SIGNAL_POLL_S": "0.1"}
    proc, port = await start_cli(tmp_path, "broker", "--mqtt-port", "0", pattern=rb"mqtt://[^\s:]+:(\d+)", env=env)
    try:
        yield tmp_path, port
    finally:
        await stop_cli(proc)


def test_device_lifecycle(tmp_path: Path) -> None:
    created = run_cli(tmp_path, "device", "create", "--serial", "cli-1", "--name", "Kitchen")
    assert created["serial"] == "cli-1" and created["name"] == "Kitchen"
    code = str(created["code"])
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}", code)
    assert run_cli(tmp_path, "device", "code", "cli-1") == {"serial": "cli-1", "code": code}
    listed = run_cli(tmp_path, "device", "list")
    assert [d["serial"] for d in listed["devices"]] == ["cli-1"]  # type: ignore[attr-defined]
    shown = run_cli(tmp_path, "device", "show", "cli-1")
    assert shown["paired"] is False and "token" not in json.dumps(shown)
    assert run_cli(tmp_path, "device", "reset", "cli-1")["code"] == code
    new_code = run_cli(tmp_path, "device", "regenerate", "cli-1")["code"]
    assert new_code != code
    generated = run_cli(tmp_path, "device", "create")
    assert re.fullmatch(r"NXG-[0-9A-HJKMNP-TV-Z]{8}", str(generated["serial"]))
    assert run_cli(tmp_path, "device", "delete", "cli-1") == {"ok": True}
    assert run_cli(tmp_path, "device", "show", "cli-1", ok=False)["code"] == "DEVICE_NOT_FOUND"


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    run_cli(tmp_path, "device", "create", "--serial", "dup")
    assert run_cli(tmp_path, "device", "create", "--serial", "DUP", ok=False)["code"] == "CONFLICT"
    assert run_cli(tmp_path, "device", "create", "--serial", "a/b", ok=False)["code"] == "INVALID_SERIAL"
    assert run_cli(tmp_path, "device", "create", "--serial", "Pair", ok=False)["code"] == "INVALID_SERIAL"
    error = run_cli(tmp_path, "cmd", "dup", "--action", "x", "--params", "{bad", ok=False)
    assert "not valid JSON" in str(error["error"])
    assert run_cli(tmp_path, "cmd", "ghost", "--action", "x", ok=False)["code"] == "DEVICE_NOT_FOUND"


async def _paired_device(data: Path, port: int, serial: str) -> tuple[TestClient, str]:
    code = str((await asyncio.to_thread(run_cli, data, "device", "create", "--serial", serial))["code"])
    token = str((await pair_over_mqtt(port, code, "p-" + serial))["token"])
    device = TestClient(serial)
    assert await device.connect(port, serial, token) == 0
    assert await device.subscribe(f"nxg/{serial}/cmd") == [1]
    return device, token


@pytest.mark.parametrize("action", ["reset", "regenerate", "delete"])
async def test_cli_change_disconnects_a_live_device_within_one_second(
    broker_process: tuple[Path, int], action: str
) -> None:
    data, port = broker_process
    device, token = await _paired_device(data, port, "live-1")
    await asyncio.to_thread(run_cli, data, "device", action, "live-1")
    # measured from the CLI's exit (its own start-up is not the server's delay)
    assert await device.wait_disconnected(1.0)
    device.close()
    again = TestClient("live-1")
    assert await again.connect(port, "live-1", token) == 5
    again.close()


async def test_cli_command_reaches_the_device_and_history(broker_process: tuple[Path, int]) -> None:
    data, port = broker_process
    device, _ = await _paired_device(data, port, "live-2")
    sent = await asyncio.to_thread(
        run_cli, data, "cmd", "live-2", "--action", "open", "--target", "door", "--params", '{"for": 3}'
    )
    received = json.loads((await device.next_message(timeout=3)).payload)
    assert received == {"t": "cmd", "id": sent["id"], "action": "open", "target": "door", "params": {"for": 3}}
    await device.publish("nxg/live-2/ack", json.dumps({"t": "ack", "id": sent["id"], "ok": True}))
    await device.publish("nxg/live-2/telemetry", json.dumps({"temp": 20.5}))
    await asyncio.sleep(0.3)
    history = await asyncio.to_thread(run_cli, data, "history", "live-2", "--type", "telemetry")
    assert history["messages"][0]["temp"] == 20.5  # type: ignore[index]
    acks = await asyncio.to_thread(run_cli, data, "history", "live-2", "--type", "ack", "--limit", "1")
    assert acks["messages"][0]["id"] == sent["id"]  # type: ignore[index]
    device.close()


# ---- the CLI and REST agree (issue 8) ----------------------------------------------------------


def run_cli_raw(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args, "--data", str(data)], capture_output=True, text=True, timeout=30)


HISTORY_MISTAKES = [
    ({"limit": "0"}, ["--limit", "0"]),
    ({"limit": "1001"}, ["--limit", "1001"]),
    ({"limit": "x"}, ["--limit", "x"]),
    ({"before": "-1"}, ["--before", "-1"]),
    ({"before": str(10**40)}, ["--before", str(10**40)]),
    ({"type": "nope"}, ["--type", "nope"]),
]


async def test_history_mistakes_get_the_same_message_from_cli_and_rest(tmp_path: Path) -> None:
    async with open_stack(make_settings(tmp_path)) as stack:
        await stack.create_device("Same-1")
        for params, flags in HISTORY_MISTAKES:
            rest = await stack.http.get("/api/history", params={"serial": "Same-1", **params})
            assert rest.status_code == 400, params
            cli = await asyncio.to_thread(run_cli, tmp_path, "history", "Same-1", *flags, ok=False)
            assert cli == {"error": rest.json()["error"], "code": "INVALID"}, flags
        rest = await stack.http.get("/api/history", params={"serial": "Ghost"})
        assert rest.status_code == 404
        cli = await asyncio.to_thread(run_cli, tmp_path, "history", "Ghost", ok=False)
        assert cli == {"error": rest.json()["error"], "code": "DEVICE_NOT_FOUND"}


async def test_history_pages_with_before_like_rest(tmp_path: Path) -> None:
    async with open_stack(make_settings(tmp_path)) as stack:
        ws, _ = await pair_gateway(stack, "Page-1")
        app = await stack.app_socket()
        for i in range(3):
            await send_json(ws, {"t": "telemetry", "n": i})
            await recv_until(app, "telemetry", n=i)
        await stack.core.ingest.flush()
        query = {"serial": "Page-1", "type": "telemetry", "limit": "2"}
        rest = (await stack.http.get("/api/history", params=query)).json()
        cli = await asyncio.to_thread(run_cli, tmp_path, "history", "Page-1", "--type", "telemetry", "--limit", "2")
        assert cli == rest and [m["n"] for m in rest["messages"]] == [2, 1]
        before = str(rest["next_before"])
        rest_next = (await stack.http.get("/api/history", params={**query, "before": before})).json()
        cli_next = await asyncio.to_thread(
            run_cli, tmp_path, "history", "Page-1", "--type", "telemetry", "--limit", "2", "--before", before
        )
        assert cli_next == rest_next and [m["n"] for m in rest_next["messages"]] == [0]
        assert cli_next["next_before"] is None
        await app.close()
        await ws.close()


@pytest.mark.parametrize("url", ["localhost:1883", "http://h:1883", "mqtt://", "mqtt://h:99999", "mqtt://h:x"])
def test_bridge_with_a_malformed_mqtt_url_is_invalid_url(tmp_path: Path, url: str) -> None:
    error = run_cli(tmp_path, "bridge", "--mqtt", url, ok=False)
    assert error["code"] == "INVALID_URL" and "mqtt://host:port" in str(error["error"])


def test_a_closed_pipe_ends_the_cli_quietly(tmp_path: Path) -> None:
    run_cli(tmp_path, "device", "create", "--serial", "pipe-1")
    reader, writer = os.pipe()
    os.close(reader)  # `| head` that has already exited
    try:
        proc = subprocess.run(
            [*CLI, "device", "list", "--data", str(tmp_path)], stdout=writer, stderr=subprocess.PIPE, timeout=30
        )
    finally:
        os.close(writer)
    assert proc.stderr == b"", proc.stderr.decode()
    assert proc.returncode == 128 + signal.SIGPIPE


@pytest.mark.parametrize("flag", ["--mqtt-port", "--ws-port", "--http-port"])
def test_a_taken_port_is_one_line_naming_its_flag(tmp_path: Path, flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"--mqtt-port": "0", "--ws-port": "0", "--http-port": "0", flag: str(port)}
        args = [a for pair in ports.items() for a in pair]
        proc = run_cli_raw(tmp_path, "serve", "--host", "127.0.0.1", *args)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"nxg-mqtt: port {port} ({WHAT[flag]}) is already in use on 127.0.0.1;"
        f" choose another with {flag} (0 = any free)"
    ]
    assert proc.stdout == ""


WHAT = {"--mqtt-port": "MQTT", "--ws-port": "MQTT/WebSocket", "--http-port": "HTTP"}


def test_a_taken_port_for_the_broker_and_the_bridge(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        broker = run_cli_raw(tmp_path, "broker", "--host", "127.0.0.1", "--mqtt-port", port)
        bridge = run_cli_raw(
            tmp_path, "bridge", "--mqtt", "mqtt://127.0.0.1:1", "--host", "127.0.0.1", "--http-port", port
        )
    assert broker.returncode == 1 and broker.stderr.strip().endswith("choose another with --mqtt-port (0 = any free)")
    assert bridge.returncode == 1 and bridge.stderr.strip().endswith("choose another with --http-port (0 = any free)")
    assert len(broker.stderr.strip().splitlines()) == len(bridge.stderr.strip().splitlines()) == 1


COMMAND_MISTAKES = [
    ({"action": ""}, ["--action", ""]),
    ({"action": "_reboot"}, ["--action", "_reboot"]),
    ({"action": "x" * 129}, ["--action", "x" * 129]),
    ({"action": "go", "target": ""}, ["--action", "go", "--target", ""]),
    ({"action": "go", "target": "t" * 129}, ["--action", "go", "--target", "t" * 129]),
]


async def test_command_mistakes_get_the_same_message_on_ws_app_and_cli(tmp_path: Path) -> None:
    async with open_stack(make_settings(tmp_path)) as stack:
        await stack.create_device("Cmd-1")
        app = await stack.app_socket()
        for fields, flags in COMMAND_MISTAKES:
            await send_json(app, {"t": "cmd", "serial": "Cmd-1", **fields})
            reply = await recv_until(app, "error")
            cli = await asyncio.to_thread(run_cli, tmp_path, "cmd", "Cmd-1", *flags, ok=False)
            assert cli == {"error": reply["error"], "code": reply["code"]}, flags
            assert reply["code"] in ("INVALID_COMMAND", "RESTRICTED_ACTION")
        await app.close()


def test_key_lifecycle_and_audit(tmp_path: Path) -> None:
    run_cli(tmp_path, "device", "create", "--serial", "aud-1")
    created = run_cli(
        tmp_path, "key", "create", "--name", "ci", "--role", "viewer", "--scope", "read:devices", "--device", "aud-1"
    )
    secret = str(created["key"])
    assert re.fullmatch(r"nxg_[A-Za-z0-9_-]{43}", secret)
    assert created["role"] == "viewer" and created["scopes"] == ["read:devices"] and created["devices"] == ["aud-1"]
    key_id = str(created["id"])
    listed = run_cli(tmp_path, "key", "list")
    assert [k["id"] for k in listed["keys"]] == [key_id]  # type: ignore[attr-defined]
    assert secret not in json.dumps(listed) and secret[:12] == listed["keys"][0]["prefix"]  # type: ignore[index]
    rotated = run_cli(tmp_path, "key", "rotate", key_id)
    assert rotated["key"] != secret and rotated["id"] == key_id
    assert run_cli(tmp_path, "key", "revoke", key_id)["revoked"] is True
    assert run_cli(tmp_path, "key", "rotate", key_id, ok=False)["code"] == "KEY_REVOKED"
    assert run_cli(tmp_path, "key", "revoke", "key_nope", ok=False)["code"] == "KEY_NOT_FOUND"
    assert run_cli(tmp_path, "key", "create", "--name", "x", "--role", "root", ok=False)["code"] == "INVALID"
    bad_scope = run_cli(
        tmp_path, "key", "create", "--name", "x", "--role", "viewer", "--scope", "write:devices", ok=False
    )
    assert bad_scope["code"] == "INVALID"
    run_cli(tmp_path, "cmd", "aud-1", "--action", "open")
    run_cli(tmp_path, "cmd", "ghost", "--action", "open", ok=False)
    entries = run_cli(tmp_path, "audit")["entries"]
    actions = [(e["action"], e["target"], e["outcome"]) for e in entries]  # type: ignore[attr-defined]
    assert actions == [
        ("command", "ghost", "DEVICE_NOT_FOUND"),
        ("command", "aud-1", "ok"),
        ("key.create", None, "INVALID"),  # refusals are recorded too
        ("key.create", None, "INVALID"),
        ("key.revoke", "key_nope", "KEY_NOT_FOUND"),
        ("key.rotate", key_id, "KEY_REVOKED"),
        ("key.revoke", key_id, "ok"),
        ("key.rotate", key_id, "ok"),
        ("key.create", key_id, "ok"),
        ("device.create", "aud-1", "ok"),
    ]
    assert all(e["actor"] == "cli" for e in entries)  # type: ignore[attr-defined]
    only = run_cli(tmp_path, "audit", "--serial", "aud-1", "--limit", "1")["entries"]
    assert [(e["action"], e["target"]) for e in only] == [("command", "aud-1")]  # type: ignore[attr-defined]
    assert run_cli(tmp_path, "audit", "--limit", "0", ok=False)["code"] == "INVALID"
    run_cli(tmp_path, "device", "reset", "ghost", ok=False)
    refused = run_cli(tmp_path, "audit", "--serial", "ghost")["entries"]
    assert [(e["action"], e["outcome"]) for e in refused] == [  # type: ignore[attr-defined]
        ("device.reset", "DEVICE_NOT_FOUND"),
        ("command", "DEVICE_NOT_FOUND"),
    ]


@pytest.mark.parametrize("action", ["revoke", "rotate"])
async def test_cli_key_change_ends_live_mqtt_sessions_within_one_second(
    broker_process: tuple[Path, int], action: str
) -> None:
    data, port = broker_process
    created = await asyncio.to_thread(run_cli, data, "key", "create", "--name", "live")
    secret = str(created["key"])
    client = TestClient("integrator")
    assert await client.connect(port, "key", secret) == 0  # the server now holds the key in its cache
    await asyncio.to_thread(run_cli, data, "key", action, str(created["id"]))
    assert await client.wait_disconnected(1.0)
    client.close()
    again = TestClient("integrator-2")
    assert await again.connect(port, "key", secret) == 4
    again.close()


async def test_devices_and_keys_are_created_in_the_tenant_named_and_listed_with_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with open_stack(settings) as stack:
        acme = await stack.http.post("/api/v1/tenant/register", json={"tenant_name": "Acme"})
        assert acme.status_code == 201, acme.text
    tenant_id = acme.json()["tenant_id"]
    by_slug = await asyncio.to_thread(run_cli, tmp_path, "device", "create", "--serial", "t-1", "--tenant", "acme")
    assert (by_slug["tenant_id"], by_slug["tenant"]) == (tenant_id, "acme")
    mine = await asyncio.to_thread(run_cli, tmp_path, "device", "create", "--serial", "d-1")  # the default tenant
    assert (mine["tenant_id"], mine["tenant"]) == (settings.tenant_id, "default")
    key = await asyncio.to_thread(run_cli, tmp_path, "key", "create", "--name", "ops", "--tenant", tenant_id)
    assert (key["tenant_id"], key["tenant"]) == (tenant_id, "acme")
    missing = await asyncio.to_thread(run_cli, tmp_path, "key", "create", "--name", "x", "--tenant", "nope", ok=False)
    assert missing["code"] == "TENANT_NOT_FOUND"
    missing = await asyncio.to_thread(run_cli, tmp_path, "device", "create", "--tenant", "nope", ok=False)
    assert missing["code"] == "TENANT_NOT_FOUND"
    devices = (await asyncio.to_thread(run_cli, tmp_path, "device", "list"))["devices"]
    assert {(d["serial"], d["tenant"]) for d in devices} == {("t-1", "acme"), ("d-1", "default")}  # type: ignore[attr-defined]
    keys = (await asyncio.to_thread(run_cli, tmp_path, "key", "list"))["keys"]
    assert {(k["name"], k["tenant"]) for k in keys} == {("acme admin", "acme"), ("ops", "acme")}  # type: ignore[attr-defined]
    # what the CLI made belongs to that tenant on every surface: its key sees its device only
    async with open_stack(settings) as stack:
        as_acme = {"Authorization": f"Bearer {key['key']}"}
        listed = await stack.http.get("/api/v1/devices", headers=as_acme)
        assert [d["id"] for d in listed.json()["devices"]] == ["t-1"], listed.text
        assert (await stack.http.get("/api/v1/devices/d-1", headers=as_acme)).status_code == 404
        assert [d["id"] for d in (await stack.http.get("/api/v1/devices")).json()["devices"]] == ["d-1"]
