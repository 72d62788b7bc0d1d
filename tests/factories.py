"""The suite's one settings factory: every test's `Settings` starts here.

Everything listens on 127.0.0.1 and port 0 (tests read the bound port back), WebSocket MQTT is off
unless a test asks, and the timers are short so that tests finish quickly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nxg_mqtt.settings import Settings

PASSWORD = "pw"  # the admin password (and the bridge's bearer token) in tests


def make_settings(tmp_path: Path | None = None, **overrides: Any) -> Settings:
    """Test settings with `tmp_path` as the data directory; `overrides` replace any field.

    Without `tmp_path` the data directory is left at its default: for the bare broker engine,
    which keeps no data.
    """
    base = Settings(
        host="127.0.0.1",
        mqtt_port=0,
        ws_port=None,
        http_port=0,
        admin_password=PASSWORD,
        ws_ping_interval_s=0.5,
        ws_pong_timeout_s=1.5,
        command_ack_timeout_s=5.0,
        batch_window_ms=10,
    )
    if tmp_path is not None:
        overrides = {"data_dir": tmp_path, **overrides}
    return base.with_overrides(**overrides)


# the bare engine (conformance, plugin contract, amqtt regressions): anonymous, quick CONNECT timeout
BROKER_SETTINGS = make_settings(allow_anonymous=True, connect_timeout_s=2.0)
