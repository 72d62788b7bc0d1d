"""`nxg-mqtt serve --broker mosquitto`: Mosquitto as a child process, configured from the shipped
top-level `mosquitto.conf` with this run's ports, hook URL, secret and paths.

    async with run_mosquitto(settings, hook_url) as mosquitto:
        print(mosquitto.mqtt_port, mosquitto.ws_port)

The generated copy lives in the data directory (`mosquitto/mosquitto.conf`, mode 0600: it holds
the internal secret); Mosquitto's persistence goes beside it. Mosquitto cannot listen on port 0,
so a port of 0 is replaced by a free one picked here first.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import re
import socket
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from nxg_mqtt.errors import NxgError
from nxg_mqtt.hooks.worker import WORKER_ID_PREFIX
from nxg_mqtt.settings import Settings

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "mosquitto.conf"
PLUGIN = ROOT / "mosquitto" / "nxg_plugin.so"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
# Mosquitto acknowledges a device's QoS 1 message when it receives it; a subscriber whose queue
# (`max_queued_messages`) is full loses what comes next, and Mosquitto says so once per episode
DROPPING = re.compile(r"Outgoing messages are being dropped for client (\S+?)\.?$")


class MosquittoFailed(NxgError):
    code = "MOSQUITTO_FAILED"
    status = 500


@dataclass(frozen=True, slots=True)
class Mosquitto:
    mqtt_port: int
    ws_port: int | None
    config: Path
    process: asyncio.subprocess.Process
    # Mosquitto's "messages are being dropped" notices, by who lost them: `ingest` (a serving
    # process's worker: acknowledged device messages that will never be stored) or `other`
    drops: Counter[str] = field(default_factory=Counter)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def render_config(
    template: str,
    *,
    mqtt_port: int,
    ws_port: int | None,
    host: str,
    plugin: Path,
    hook_url: str,
    secret: str,
    persistence: Path,
) -> str:
    """The template with its GENERATED lines replaced; the WebSocket listener dropped if off."""
    out: list[str] = []
    lines = template.splitlines()
    bind = "" if host in ("0.0.0.0", "", "::") else f" {host}"
    for i, line in enumerate(lines):
        words = line.split()
        following = lines[i + 1].split() if i + 1 < len(lines) else []
        if words[:1] == ["listener"]:
            websocket = following == ["protocol", "websockets"]
            if websocket and ws_port is None:
                continue
            out.append(f"listener {ws_port if websocket else mqtt_port}{bind}")
        elif words == ["protocol", "websockets"] and ws_port is None:
            continue
        elif words[:1] == ["plugin"]:
            out.append(f"plugin {plugin}")
        elif words[:1] == ["plugin_opt_url"]:
            out.append(f"plugin_opt_url {hook_url}")
        elif words[:1] == ["plugin_opt_secret"]:
            out.append(f"plugin_opt_secret {secret}")
        elif words[:1] == ["persistence_location"]:
            out.append(f"persistence_location {persistence}/")
        else:
            out.append(line)
    if os.geteuid() == 0:
        # Mosquitto started as root drops to the `mosquitto` user, which could not read the data
        # directory: it stays the user that runs NXG
        out.append(f"user {getpass.getuser()}")
    return "\n".join(out) + "\n"


@contextlib.asynccontextmanager
async def run_mosquitto(settings: Settings, hook_url: str) -> AsyncIterator[Mosquitto]:
    if not PLUGIN.exists():
        raise MosquittoFailed(f"{PLUGIN} is missing: build it with `make -C mosquitto` (scripts/setup.sh does)")
    binary = settings.mosquitto_bin
    if not os.access(binary, os.X_OK):
        raise MosquittoFailed(f"{binary} is not an executable Mosquitto (--mosquitto-bin)")
    mqtt_port = settings.mqtt_port or free_port()
    ws_port = None if settings.ws_port is None else (settings.ws_port or free_port())
    home = settings.data_dir / "mosquitto"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "mosquitto.conf"
    text = render_config(
        TEMPLATE.read_text(),
        mqtt_port=mqtt_port,
        ws_port=ws_port,
        host=settings.host,
        plugin=PLUGIN,
        hook_url=hook_url,
        secret=settings.internal_secret,
        persistence=home.resolve(),
    )
    config.touch(mode=0o600)
    config.write_text(text)
    process = await asyncio.create_subprocess_exec(
        str(binary), "-c", str(config), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    drops: Counter[str] = Counter()
    relay = asyncio.create_task(_relay(process, drops))
    try:
        await _wait_listening(process, mqtt_port)
        yield Mosquitto(mqtt_port, ws_port, config, process, drops)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay


async def _relay(process: asyncio.subprocess.Process, drops: Counter[str]) -> None:
    """Mosquitto's log lines into ours; a subscriber losing messages is not left at INFO."""
    assert process.stdout is not None
    while line := await process.stdout.readline():
        text = line.decode(errors="replace").rstrip()
        dropping = DROPPING.search(text)
        if dropping is None:
            log.info("mosquitto: %s", text)
        elif dropping.group(1).startswith(WORKER_ID_PREFIX):
            drops["ingest"] += 1
            log.error(
                "mosquitto: %s -- device messages Mosquitto has acknowledged are being lost: the serving"
                " processes do not keep up and its queue for %s (max_queued_messages) is full; run more"
                ' serving processes or raise max_queued_messages (README "Scaling out")',
                text,
                dropping.group(1),
            )
        else:
            drops["other"] += 1
            log.warning("mosquitto: %s", text)


async def _wait_listening(process: asyncio.subprocess.Process, port: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while loop.time() < deadline:
        if process.returncode is not None:
            raise MosquittoFailed(f"mosquitto exited with {process.returncode} (see the log above)")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise MosquittoFailed(f"mosquitto did not listen on {port} within {START_TIMEOUT_S:.0f} s")
