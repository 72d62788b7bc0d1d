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


async def test_a_full_subscriber_queue_is_an_error_for_a_serving_process_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Mosquitto acknowledges a device's QoS 1 message on receipt; when a serving process's queue is
    full it drops what comes next and says so once, at notice level. Relayed at INFO that loss was
    silent: it is an ERROR naming the remedy (another subscriber's, a WARNING), and counted."""
    import asyncio
    import logging
    from collections import Counter

    from nxg_mqtt.hooks.mosquitto import _relay

    lines = [
        "1795950561: Outgoing messages are being dropped for client nxg-worker-0.",
        "1795950561: Outgoing messages are being dropped for client bridge-bench.",
        "1795950562: New client connected from 127.0.0.1:4242 as d1 (p2, c1, k60, u'd1').",
    ]
    process = await asyncio.create_subprocess_exec(
        "printf", "%s\\n", *lines, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    drops: Counter[str] = Counter()
    with caplog.at_level(logging.INFO, logger="nxg_mqtt.hooks.mosquitto"):
        await _relay(process, drops)
    await process.wait()
    assert drops == {"ingest": 1, "other": 1}
    levels = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "nxg_mqtt.hooks.mosquitto"]
    assert [level for level, _ in levels] == [logging.ERROR, logging.WARNING, logging.INFO]
    assert "nxg-worker-0" in levels[0][1] and "max_queued_messages" in levels[0][1]
    assert levels[2][1].endswith("u'd1').")
