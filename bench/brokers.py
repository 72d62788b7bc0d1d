"""Starting, measuring and stopping the brokers under test (each in its own process)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.common import Cred, free_port, port_open

ROOT = Path(__file__).resolve().parent.parent
PORT_RE = re.compile(r"mqtt://[^\s:]+:(\d+)")


class BrokerUnavailable(RuntimeError):
    """The broker cannot be started here (not installed / not implemented yet)."""


@dataclass
class BrokerProc:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    host: str = "127.0.0.1"
    stop_signal: int = signal.SIGTERM
    # the broker's login data (NXG only): device creds by serial, the telemetry subscriber
    devices: list[Cred] = field(default_factory=list)
    subscriber: Cred = field(default_factory=lambda: Cred("bench-sub"))
    db_path: Path | None = None
    killed: bool = False  # did not stop within the timeout after SIGINT/SIGTERM

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss(self) -> int:
        """Resident memory of the broker process and its children, bytes."""
        try:
            proc = psutil.Process(self.proc.pid)
            total: int = proc.memory_info().rss
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
            return total
        except psutil.Error:
            return 0

    def cpu_times(self) -> float:
        """CPU seconds of the broker: the process and its children (the Mosquitto profile's
        broker is two processes: the serving process and the Mosquitto it started)."""
        return sum(self.cpu_by_process().values())

    def cpu_by_process(self) -> dict[str, float]:
        """CPU seconds (user + system) by process name: the process, then its children."""
        out: dict[str, float] = {}
        try:
            proc = psutil.Process(self.proc.pid)
            procs = [proc, *proc.children(recursive=True)]
        except psutil.Error:
            return out
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                name = p.name()
                out[name] = out.get(name, 0.0) + float(t.user + t.system)
        return out

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(self.stop_signal)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.proc.kill()
                self.proc.wait(5)
            except ProcessLookupError:
                pass


def _popen(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, env=env)
    finally:
        log.close()


def _wait_port(bp: BrokerProc, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not bp.alive():
            raise RuntimeError(f"{bp.name} exited at start:\n{bp.log_tail()}")
        if port_open(bp.host, bp.port):
            return
        time.sleep(0.05)
    bp.stop()
    raise RuntimeError(f"{bp.name} did not listen on {bp.port} within {timeout}s:\n{bp.log_tail()}")


def start_amqtt(workdir: Path, uvloop: bool = True) -> BrokerProc:
    port = free_port()
    cmd = [sys.executable, "-m", "bench.amqtt_broker", "--port", str(port)]
    if not uvloop:
        cmd.append("--no-uvloop")
    log_path = workdir / "amqtt.log"
    bp = BrokerProc("amqtt", _popen(cmd, log_path), port, log_path)
    _wait_port(bp)
    return bp


MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000000
max_inflight_messages {inflight}
max_keepalive 65535
log_dest stdout
log_type error
log_type warning
"""


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


def start_mosquitto(workdir: Path, inflight: int = 1000) -> BrokerProc:
    exe = mosquitto_path()
    if exe is None:
        raise BrokerUnavailable("mosquitto not installed (apt-get install -y mosquitto)")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    conf.write_text(MOSQUITTO_CONF.format(port=port, inflight=inflight))
    log_path = workdir / "mosquitto.log"
    bp = BrokerProc("mosquitto", _popen([exe, "-c", str(conf)], log_path), port, log_path)
    _wait_port(bp)
    return bp


# --------------------------------------------------------------------------------------------
# NXG


def nxg_available() -> str | None:
    """None when the NXG broker can be run here, else the reason it cannot."""
    try:
        import importlib.util

        for mod in ("nxg_mqtt.cli", "nxg_mqtt.core"):
            if importlib.util.find_spec(mod) is None:
                return f"{mod} does not exist yet"
    except ImportError as exc:
        return f"nxg_mqtt not importable: {exc}"
    return None


def nxg_command() -> list[str]:
    script = Path(sys.executable).parent / "nxg-mqtt"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "nxg_mqtt.cli"]


def start_nxg(
    data_dir: Path, workdir: Path, devices: list[Cred], secret: str, extra_args: list[str] | None = None
) -> BrokerProc:
    """Start `nxg-mqtt broker` on an already provisioned data dir; read the port it prints."""
    reason = nxg_available()
    if reason:
        raise BrokerUnavailable(reason)
    env = dict(os.environ, NXG_INTERNAL_SECRET=secret, PYTHONUNBUFFERED="1")
    cmd = [*nxg_command(), "broker", "--mqtt-port", "0", "--data", str(data_dir), *(extra_args or [])]
    return _launch_nxg("nxg", "nxg broker", cmd, env, data_dir, workdir, devices, secret)


def _launch_nxg(
    name: str,
    what: str,
    cmd: list[str],
    env: dict[str, str],
    data_dir: Path,
    workdir: Path,
    devices: list[Cred],
    secret: str,
) -> BrokerProc:
    """Run an nxg-mqtt command on a provisioned data dir and wait for the mqtt://host:port line it
    prints (port 0 is bound by the process, so the log is the only place the port is known)."""
    log_path = workdir / f"{name}.log"
    proc = _popen(cmd, log_path, env)
    bp = BrokerProc(name, proc, 0, log_path, stop_signal=signal.SIGINT)
    bp.devices = devices
    bp.subscriber = Cred("bridge-bench", "bridge", secret)
    bp.db_path = data_dir / "nxg.sqlite3"
    deadline = time.time() + 60
    while time.time() < deadline:
        if not bp.alive():
            raise RuntimeError(f"{what} exited at start:\n{bp.log_tail()}")
        match = PORT_RE.search(log_path.read_text(errors="replace"))
        if match:
            bp.port = int(match.group(1))
            _wait_port(bp)
            return bp
        time.sleep(0.1)
    bp.stop()
    raise RuntimeError(f"{what} printed no mqtt://host:port line within 60s:\n{bp.log_tail()}")


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def start_nxg_mosquitto(data_dir: Path, workdir: Path, devices: list[Cred], secret: str) -> BrokerProc:
    """The Mosquitto profile: `nxg-mqtt serve --broker mosquitto` (Mosquitto as its child, with the
    NXG plugin and the shipped mosquitto.conf; the serving process stores through shared
    subscriptions). Same data directory, logins and store as `start_nxg`; RSS counts both processes."""
    reason = nxg_available()
    if reason:
        raise BrokerUnavailable(reason)
    if mosquitto_path() is None:
        raise BrokerUnavailable("mosquitto not installed (scripts/setup.sh --with-tests)")
    if not (ROOT / "mosquitto" / "nxg_plugin.so").exists():
        raise BrokerUnavailable("mosquitto/nxg_plugin.so not built (make -C mosquitto)")
    env = dict(os.environ, NXG_INTERNAL_SECRET=secret, PYTHONUNBUFFERED="1")
    cmd = [
        *nxg_command(),
        "serve",
        "--broker",
        "mosquitto",
        "--host",
        "127.0.0.1",
        "--mqtt-port",
        "0",
        "--ws-port",
        "off",
        "--http-port",
        "0",
        "--data",
        str(data_dir),
    ]
    return _launch_nxg("nxg-mosquitto", "nxg serve --broker mosquitto", cmd, env, data_dir, workdir, devices, secret)
