"""The configuration `serve --broker mosquitto` generates from the shipped mosquitto.conf, and the
plugin's build (C, -Wall -Wextra -Werror against Debian's mosquitto-dev)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from nxg_mqtt.hooks.mosquitto import ROOT, TEMPLATE, render_config


def render(ws_port: int | None, host: str = "0.0.0.0") -> str:
    return render_config(
        TEMPLATE.read_text(),
        mqtt_port=11883,
        ws_port=ws_port,
        host=host,
        plugin=Path("/opt/nxg/nxg_plugin.so"),
        hook_url="http://127.0.0.1:18090",
        secret="s3cret",
        persistence=Path("/data/mosquitto"),
    )


def test_generated_lines_carry_this_run() -> None:
    text = render(18083)
    lines = text.splitlines()
    assert "listener 11883" in lines and "listener 18083" in lines
    assert lines[lines.index("listener 18083") + 1] == "protocol websockets"
    assert "plugin /opt/nxg/nxg_plugin.so" in lines
    assert "plugin_opt_url http://127.0.0.1:18090" in lines and "plugin_opt_secret s3cret" in lines
    assert "persistence_location /data/mosquitto/" in lines
    # what is not generated is used as written: no anonymous access, the chosen limits
    assert "allow_anonymous false" in lines and "max_inflight_messages 1000" in lines
    assert "change-me" not in text


def test_no_websocket_listener_when_it_is_off_and_a_bound_host() -> None:
    lines = render(None, host="127.0.0.1").splitlines()
    assert "protocol websockets" not in lines
    assert [line for line in lines if line.startswith("listener")] == ["listener 11883 127.0.0.1"]


def test_the_plugin_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    if not Path("/usr/include/mosquitto_broker.h").exists() or shutil.which("make") is None:
        pytest.skip("mosquitto-dev or make missing (scripts/setup.sh --with-tests installs them)")
    for name in ("nxg_plugin.c", "acl_cache.h", "Makefile"):
        shutil.copy(ROOT / "mosquitto" / name, tmp_path)
    built = subprocess.run(["make", "-C", str(tmp_path)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    assert "-Werror" in built.stdout and (tmp_path / "nxg_plugin.so").exists()
