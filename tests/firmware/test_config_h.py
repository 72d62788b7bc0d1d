"""`firmware/esp32/main/config.h` is exactly what `GET /api/devices/:serial/config.h` serves."""

from __future__ import annotations

import re

from bridge import config_h
from nxg_mqtt.models import Device
from tests.firmware.helpers import FIRMWARE


def _define(text: str, name: str) -> str:
    match = re.search(rf"^#define {name}\s+(\S+)", text, re.MULTILINE)
    assert match, name
    return match.group(1).strip('"')


def test_the_example_config_h_is_the_served_one() -> None:
    text = (FIRMWARE / "esp32" / "main" / "config.h").read_text()
    device = Device(
        serial=_define(text, "NXG_DEVICE_SERIAL"),
        name=None,
        code=_define(text, "NXG_CONNECTION_CODE").replace("-", ""),
        paired=False,
        online=False,
        last_seen=None,
        created_at=0,
    )
    served = config_h.render(
        device,
        _define(text, "NXG_SERVER_HOST"),
        int(_define(text, "NXG_MQTT_PORT")),
        int(_define(text, "NXG_MQTT_WS_PORT")) or None,
        int(_define(text, "NXG_HTTP_PORT")),
        int(_define(text, "NXG_MAX_PAYLOAD_BYTES")),
    )
    assert text == served


def test_the_firmware_uses_only_defines_the_server_serves() -> None:
    served = set(re.findall(r"#define (NXG_\w+)", (FIRMWARE / "esp32" / "main" / "config.h").read_text()))
    app = (FIRMWARE / "esp32" / "main" / "app_main.c").read_text()
    used = {name for name in re.findall(r"\b(NXG_[A-Z_]+)\b", app) if not name.startswith(("NXG_CHANNEL", "NXG_OK"))}
    from_config_h = {name for name in used if name in served or name.startswith(("NXG_SERVER", "NXG_DEVICE"))}
    assert from_config_h <= served
    assert {"NXG_SERVER_HOST", "NXG_MQTT_PORT", "NXG_HTTP_PORT", "NXG_DEVICE_SERIAL", "NXG_CONNECTION_CODE"} <= used
