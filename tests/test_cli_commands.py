"""`nxg-mqtt cmd` is checked like every other path: the PROTOCOL §4 codes, PARAMS_INVALID with
each schema error, DRY_RUN_REQUIRED with its token, and `--require-manifest`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nxg_mqtt.core import open_core
from tests.factories import make_settings

CLI = [sys.executable, "-m", "nxg_mqtt.cli"]
MANIFEST = {
    "capabilities": [
        {
            "action": "open",
            "targets": ["door"],
            "paramSchema": {"type": "object", "properties": {"for": {"type": "integer"}}},
        },
        {"action": "unlock", "safetyClass": "critical"},
    ]
}


@pytest.fixture
async def data(tmp_path: Path) -> Path:
    async with open_core(make_settings(tmp_path)) as core:
        await core.devices.create("k1")
        await core.devices.create("bare")
        await core.manifests.put("k1", MANIFEST)
    return tmp_path


def cmd(data: Path, serial: str, *args: str) -> tuple[int, dict[str, object]]:
    proc = subprocess.run([*CLI, "cmd", serial, *args, "--data", str(data)], capture_output=True, text=True, timeout=30)
    text = proc.stdout if proc.returncode == 0 else proc.stderr.strip().splitlines()[-1]
    return proc.returncode, json.loads(text)


@pytest.mark.parametrize(
    ("serial", "args", "code"),
    [
        ("k1", ["--action", "close"], "ACTION_NOT_IN_MANIFEST"),
        ("k1", ["--action", "open", "--target", "window"], "ACTION_NOT_IN_MANIFEST"),
        ("k1", ["--action", "open", "--params", '{"for": "ever"}'], "PARAMS_INVALID"),
        ("k1", ["--action", "_wipe"], "RESTRICTED_ACTION"),
        ("k1", ["--action", "unlock"], "DRY_RUN_REQUIRED"),
        ("ghost", ["--action", "open"], "DEVICE_NOT_FOUND"),
        ("bare", ["--action", "anything", "--require-manifest"], "MANIFEST_NOT_FOUND"),
    ],
)
def test_cli_rejections(data: Path, serial: str, args: list[str], code: str) -> None:
    status, reply = cmd(data, serial, *args)
    assert status == 1 and reply["code"] == code, reply
    if code == "PARAMS_INVALID":
        assert reply["details"] == [{"path": "$.for", "message": "'ever' is not of type 'integer'"}]
    if code == "DRY_RUN_REQUIRED":
        assert isinstance(reply["dry_run_token"], str)


def test_cli_accepts_a_valid_command_and_a_bare_device_without_the_flag(data: Path) -> None:
    status, reply = cmd(data, "k1", "--action", "open", "--target", "door", "--params", '{"for": 3}')
    assert status == 0 and reply["status"] == "queued" and reply["params"] == {"for": 3}
    status, reply = cmd(data, "bare", "--action", "anything")
    assert status == 0 and reply["action"] == "anything"


def test_no_ws_turns_the_mqtt_websocket_listener_off(tmp_path: Path) -> None:
    from nxg_mqtt.cli import _build_settings, build_parser

    args = build_parser().parse_args(["serve", "--no-ws", "--data", str(tmp_path)])
    assert _build_settings(args)[0].ws_port is None  # was 8083: with_overrides drops None
