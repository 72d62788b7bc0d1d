"""Settings from a config file, the environment and flags (flags > env > file > defaults), as a
user meets them: the `nxg-mqtt` process, its one-line refusals and `nxg-mqtt config show`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from nxg_mqtt import __version__, config
from nxg_mqtt.settings import Settings

CLI = [sys.executable, "-m", "nxg_mqtt"]


def nxg(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NXG_")}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=30, env={**clean, **(env or {})}, cwd=cwd
    )


def show(*args: str, env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    done = nxg("config", "show", *args, env=env)
    assert done.returncode == 0, done.stderr
    listed: dict[str, dict[str, Any]] = json.loads(done.stdout)
    return listed


def test_flags_win_over_env_which_wins_over_the_file(tmp_path: Path) -> None:
    file = tmp_path / "nxg.toml"
    file.write_text('mqtt_port = 1001\nhttp_port = 1002\nws_port = 1003\nlog_format = "json"\ndata_dir = "d"\n')
    env = {"NXG_MQTT_PORT": "2001", "NXG_HTTP_PORT": "2002"}
    listed = show("--config", str(file), "--mqtt-port", "3001", env=env)
    assert (listed["mqtt_port"]["value"], listed["mqtt_port"]["source"]) == (3001, "flag")
    assert (listed["http_port"]["value"], listed["http_port"]["source"]) == (2002, "env")
    assert (listed["ws_port"]["value"], listed["ws_port"]["source"]) == (1003, "file")
    assert listed["log_format"]["value"] == "json"
    assert listed["data_dir"]["value"] == str(tmp_path / "d")  # relative to the file
    assert (listed["wss_port"]["value"], listed["wss_port"]["source"]) == (8084, "default")
    # NXG_CONFIG names the file when --config does not
    assert show(env={"NXG_CONFIG": str(file)})["ws_port"]["value"] == 1003


def test_config_show_lists_every_setting_with_its_default_env_and_flag() -> None:
    from nxg_mqtt.settings import Settings

    listed = show()
    assert set(listed) == set(Settings.__dataclass_fields__)
    assert listed["mqtt_port"] == {
        "value": 1883,
        "default": 1883,
        "source": "default",
        "env": "NXG_MQTT_PORT",
        "flag": "--mqtt-port",
    }
    assert listed["internal_secret"]["value"] == "(set)"  # never printed
    secret = show("--admin-password", "hunter2")
    assert "hunter2" not in json.dumps(secret)


@pytest.mark.parametrize(
    ("args", "env", "file", "message"),
    [
        (["--mqtt-port", "eighty"], {}, None, "--mqtt-port: 'eighty' is not allowed; expected a whole number"),
        (["--http-port", "70000"], {}, None, "--http-port: '70000' is not allowed; expected a port from 0 to 65535"),
        ([], {"NXG_PLAIN": "on"}, None, "NXG_PLAIN: 'on' is not allowed; expected one of true, false, 1, 0, yes, no"),
        ([], {"NXG_LOG_FORMAT": "xml"}, None, "NXG_LOG_FORMAT: 'xml' is not allowed; expected one of text, json"),
        (["--log-level", "loud"], {}, None, "--log-level: 'loud' is not allowed; expected one of debug, info"),
        (["--batch-window-ms", "-5"], {}, None, "--batch-window-ms: '-5' is not allowed; expected a number ≥ 0"),
        ([], {}, "mqtt_port = true\n", "nxg.toml: mqtt_port: True is not allowed; expected a whole number"),
        ([], {}, "allow_anonymous = 'maybe'\n", "nxg.toml: allow_anonymous: 'maybe' is not allowed; expected one of"),
        ([], {}, "mqtt_prot = 1\n", "nxg.toml: unknown setting 'mqtt_prot'"),
        ([], {}, "mqtt_port = \n", "not valid TOML"),
        (["--tls-cert", "/nonexistent.pem", "--tls-key", "/x"], {}, None, "--tls-cert: '/nonexistent.pem' is not a"),
        (["--no-plain"], {}, None, "--no-plain needs TLS"),
    ],
)
def test_a_bad_value_is_refused_at_start_with_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], file: str | None, message: str
) -> None:
    if file is not None:
        (tmp_path / "nxg.toml").write_text(file)
        args = [*args, "--config", str(tmp_path / "nxg.toml")]
    done = nxg("serve", "--data", str(tmp_path / "data"), "--mqtt-port", "0", *args, env=env)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nxg-mqtt: ") and message in lines[0], done.stderr
    assert not (tmp_path / "data").exists()  # refused before anything started


def test_version_and_python_dash_m() -> None:
    done = nxg("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"nxg-mqtt {__version__}"


async def _banner(*args: str) -> tuple[str, asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert proc.stdout is not None
    banner = ""
    while "Data" not in banner:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        assert line, banner
        banner += line.decode()
    return banner, proc


@pytest.mark.parametrize(("flag", "gone"), [("--no-ws", "ws://"), ("--ws-port=off", "ws://")])
async def test_no_ws_leaves_no_websocket_listener(tmp_path: Path, flag: str, gone: str) -> None:
    common = ("serve", "--host", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--data", str(tmp_path))
    banner, proc = await _banner(*common, "--ws-port", "0", flag)
    try:
        assert "MQTT/WebSocket" not in banner and re.search(r"mqtt://127\.0\.0\.1:\d+", banner)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=15) == 0
    banner, proc = await _banner(*common, "--ws-port", "0")
    try:
        assert re.search(r"MQTT/WebSocket +ws://127\.0\.0\.1:\d+/mqtt", banner)  # the same start without it
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=15) == 0


def test_every_boolean_has_a_no_flag(tmp_path: Path) -> None:
    from nxg_mqtt.settings import setting_types

    booleans = [name for name, kind in setting_types().items() if kind == "bool"]
    assert "plain" in booleans and "allow_anonymous" in booleans
    for pem in ("cert.pem", "key.pem"):
        (tmp_path / pem).write_text("")  # `--no-plain` needs TLS configured; only existence is checked here
    tls = ("--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem"))
    for name in booleans:
        flag = "--" + name.replace("_", "-")
        assert show(flag, *tls)[name]["value"] is True
        assert show(flag, "--no-" + flag[2:], *tls, env={f"NXG_{name.upper()}": "true"})[name]["value"] is False


def test_the_readme_settings_table_is_the_code_s() -> None:
    """The README lists every setting (flag, variable, default, meaning) exactly as the code has them:
    regenerate with `python -m nxg_mqtt.config --readme README.md` after changing a setting."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert config.with_settings_table(readme) == readme, "README settings table is stale: regenerate it"
    table = config.settings_table()
    for f in fields(Settings):
        assert f"| `{f.name}` | `{config.flag_of(f.name)}" in table and config.HELP[f.name], f.name
    assert "| `plain` | `--plain / --no-plain` | `NXG_PLAIN` | `true` |" in table
    assert "| `mqtt_port` | `--mqtt-port` | `NXG_MQTT_PORT` | `1883` |" in table


def test_the_readme_sample_config_file_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    sample = re.search(r"```toml\n(.*?)```", readme, re.DOTALL)
    assert sample is not None
    (tmp_path / "nxg.toml").write_text(sample.group(1))
    values = config.load_file(tmp_path / "nxg.toml")  # every key a setting, every value allowed
    assert values["plain"] is False and values["log_format"] == "json"
