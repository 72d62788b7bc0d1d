"""The bridge reaches the broker only over MQTT: importing it loads neither the engine nor amqtt."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _modules_loaded_by(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out))


@pytest.mark.parametrize(
    "statement",
    ["import bridge.app", "import bridge.server", "import nxg_mqtt.mqtt.codec", "import nxg_mqtt.core"],
)
def test_bridge_and_core_do_not_load_the_broker(statement: str) -> None:
    loaded = _modules_loaded_by(statement)
    assert statement.split()[1] in loaded  # the import itself happened
    offending = sorted(m for m in loaded if m.startswith(("nxg_mqtt.broker", "amqtt")))
    assert offending == []


def test_wire_package_is_pure() -> None:
    loaded = _modules_loaded_by("import nxg_mqtt.mqtt.codec")
    assert not any(m.startswith(("bridge", "starlette", "websockets", "aiosqlite")) for m in loaded)


def test_no_bridge_module_imports_the_broker() -> None:
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent / "bridge"
    for path in root.glob("*.py"):
        text = path.read_text()
        assert "nxg_mqtt.broker" not in text, path.name
        assert "import amqtt" not in text and "from amqtt" not in text, path.name
