"""The package as a user installs it: a wheel (not editable) in a fresh venv outside the checkout.

The wheel is built from this checkout and installed with `--no-deps`; its dependencies are made
visible from the test's own venv through a `.pth` line (offline and fast). A `.pth` line only adds a
path: the checkout's editable-install hook is not processed, so `nxg_mqtt` and `schemas/` can only
come from the wheel — which is asserted.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import site
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.mqtt_client import TestClient, pair_over_mqtt

ROOT = Path(__file__).resolve().parent.parent


def _get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as response:
        value: dict[str, object] = json.loads(response.read())
    return value


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `bin/` of a fresh venv holding only the wheel built from this checkout."""
    work = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(ROOT)]
    subprocess.run(build, check=True, timeout=120, cwd=work)
    (wheel,) = (work / "dist").glob("nxg_mqtt-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    (purelib,) = venv.glob("lib/python3*/site-packages")
    # pip run against the new venv's interpreter: a normal install, console script included
    install = [*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", str(wheel)]
    subprocess.run(install, check=True, timeout=120)
    (purelib / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv / "bin"


def test_the_wheel_carries_the_schemas_and_runs_as_a_module(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [installed / "python", "-c", "import nxg_mqtt.messages as m; print(m.SCHEMA_DIR); m.schema('telemetry')"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    schema_dir = Path(where.stdout.splitlines()[0])
    assert schema_dir.is_relative_to(installed.parent) and not schema_dir.is_relative_to(ROOT)
    version = subprocess.run([installed / "python", "-m", "nxg_mqtt", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and re.fullmatch(r"nxg-mqtt \d+\.\d+\.\d+\S*", version.stdout.strip())


async def test_the_installed_wheel_serves_a_paired_device(installed: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli = str(installed / "nxg-mqtt")
    proc = await asyncio.create_subprocess_exec(
        cli,
        "serve",
        *("--host", "127.0.0.1", "--mqtt-port", "0", "--no-ws", "--http-port", "0", "--data", str(data)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    try:
        banner = b""
        while b"Data" not in banner:
            banner += await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        match = re.search(rb"mqtt://[^\s:]+:(\d+)", banner)
        assert match, banner
        port = int(match.group(1))
        http = re.search(rb"HTTP +(http://\S+)/", banner)
        assert http, banner
        # CHANGELOG.md travels in the wheel: /changelog lists its sections, read from the package
        changelog = await asyncio.to_thread(_get_json, http.group(1).decode() + "/api/v1/changelog")
        assert changelog["changelog"] and changelog["changelog"][0]["version"] == "Unreleased"  # type: ignore[index]

        def run(*args: str) -> dict[str, object]:
            done = subprocess.run([cli, *args, "--data", str(data)], capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stderr
            result: dict[str, object] = json.loads(done.stdout)
            return result

        created = await asyncio.to_thread(run, "device", "create", "--serial", "wheel-1")
        token = str((await pair_over_mqtt(port, str(created["code"]), "p-wheel-1"))["token"])
        device = TestClient("wheel-1")
        try:
            assert await device.connect(port, "wheel-1", token) == 0
            await device.publish("nxg/wheel-1/telemetry", json.dumps({"temp": 21.5}))
            # validated against the wheel's own schemas, then stored: history shows it
            for _ in range(50):
                history = await asyncio.to_thread(run, "history", "wheel-1", "--type", "telemetry")
                if history["messages"]:
                    break
                await asyncio.sleep(0.1)
            assert history["messages"][0]["temp"] == 21.5  # type: ignore[index]
        finally:
            device.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=15) == 0
