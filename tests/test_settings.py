"""Settings: one frozen object; `NXG_*` variables overlaid at the edge, typed like the defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from nxg_mqtt.errors import SettingError
from nxg_mqtt.settings import Settings, settings_from_env


def test_defaults_are_the_documented_ones() -> None:
    settings = Settings()
    assert (settings.mqtt_port, settings.ws_port, settings.http_port) == (1883, 8083, 8080)
    assert settings.command_rate_limit == 300 and settings.max_payload_bytes == 16 * 1024
    assert settings.db_path == Path("./nxg-data") / "nxg.sqlite3"


def test_each_settings_object_gets_its_own_internal_secret() -> None:
    assert Settings().internal_secret != Settings().internal_secret


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().mqtt_port = 1  # type: ignore[misc]


def test_env_values_take_the_type_of_the_default() -> None:
    env = {
        "NXG_MQTT_PORT": "1999",
        "NXG_WS_PING_INTERVAL_S": "2.5",
        "NXG_ALLOW_ANONYMOUS": "yes",
        "NXG_DATA_DIR": "/tmp/somewhere",
        "NXG_ADMIN_PASSWORD": "secret",  # default None: taken as text
        "NXG_PUBLIC_HOST": "iot.example.com",
    }
    settings = settings_from_env(env)
    assert settings.mqtt_port == 1999 and isinstance(settings.mqtt_port, int)
    assert settings.ws_ping_interval_s == 2.5
    assert settings.allow_anonymous is True
    assert settings.data_dir == Path("/tmp/somewhere")
    assert settings.admin_password == "secret" and settings.public_host == "iot.example.com"


@pytest.mark.parametrize("text", ["0", "false", "no", "FALSE"])
def test_false_booleans(text: str) -> None:
    assert settings_from_env({"NXG_ALLOW_ANONYMOUS": text}).allow_anonymous is False


@pytest.mark.parametrize("text", ["off", "on", "", "2", "y"])
def test_booleans_are_only_true_false_1_0_yes_no(text: str) -> None:
    with pytest.raises(SettingError, match=r"NXG_ALLOW_ANONYMOUS: .* expected one of true, false, 1, 0, yes, no"):
        settings_from_env({"NXG_ALLOW_ANONYMOUS": text})


@pytest.mark.parametrize(("text", "port"), [("", None), ("none", None), ("off", None), ("9001", 9001)])
def test_ws_port_can_be_switched_off(text: str, port: int | None) -> None:
    assert settings_from_env({"NXG_WS_PORT": text}).ws_port == port


def test_env_overlays_a_base_and_ignores_unknown_names() -> None:
    base = Settings(http_port=1234, mqtt_port=0)
    settings = settings_from_env({"NXG_MQTT_PORT": "5", "NXG_NOT_A_SETTING": "x", "OTHER": "y"}, base)
    assert settings.mqtt_port == 5 and settings.http_port == 1234
    assert settings.internal_secret == base.internal_secret


def test_a_bad_number_is_an_error_not_a_default() -> None:
    with pytest.raises(SettingError, match="NXG_MQTT_PORT: 'eighty' is not allowed; expected a whole number"):
        settings_from_env({"NXG_MQTT_PORT": "eighty"})


def test_with_overrides_skips_none_and_returns_a_new_object() -> None:
    base = Settings()
    changed = base.with_overrides(http_port=9, public_host=None)
    assert changed.http_port == 9 and changed.public_host is None
    assert base.http_port == 8080
