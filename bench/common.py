"""Shared pieces of the benchmarks: payloads, job descriptions, event loops, percentiles."""

from __future__ import annotations

import asyncio
import math
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

R = TypeVar("R")

PAYLOAD_SIZE = 100
TELEMETRY_TOPIC = "nxg/{serial}/telemetry"
CMD_TOPIC = "nxg/{serial}/cmd"
TELEMETRY_FILTER = "nxg/+/telemetry"
GRACE_S = 3.0


def make_payload(seq: int, ts_ms: int, size: int = PAYLOAD_SIZE) -> bytes:
    """`{"seq":N,"ts":<ms>,"temp":..,"pad":"xx…"}` padded to exactly `size` bytes."""
    head = b'{"seq":%d,"ts":%d,"temp":%d.%d,"pad":"' % (seq, ts_ms, 18 + seq % 7, seq % 10)
    pad = size - len(head) - 2
    return head + b"x" * max(pad, 0) + b'"}'


def payload_ts(payload: bytes) -> int:
    """The `ts` field of a bench payload, without a JSON parse."""
    i = payload.index(b'"ts":') + 5
    return int(payload[i : payload.index(b",", i)])


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Cred:
    """How one client logs in: client id, optional username/password."""

    client_id: str
    username: str | None = None
    password: str | None = None

    @property
    def serial(self) -> str:
        return self.client_id


@dataclass(frozen=True, slots=True)
class PubJob:
    host: str
    port: int
    devices: Sequence[Cred]
    mode: str  # "sat" (as fast as the broker takes it) or "paced"
    qos: int
    rate: float = 0.0  # paced: msg/s for this process
    inflight: int = 16  # sat QoS 1: unacknowledged messages per device
    batch: int = 16  # sat QoS 0: messages per write, each write followed by a PINGREQ
    q0_batches: int = 4  # sat QoS 0: batches whose PINGRESP is still outstanding, per device
    payload_size: int = PAYLOAD_SIZE
    connect_concurrency: int = 50
    keepalive: int = 0


@dataclass(frozen=True, slots=True)
class SubJob:
    host: str
    port: int
    cred: Cred
    qos: int
    topic_filter: str = TELEMETRY_FILTER
    latency: bool = False  # parse the payload ts of every message
    keep_ts: bool = False  # also keep (payload ts, latency) pairs, to split the window afterwards


@dataclass(frozen=True, slots=True)
class IdleJob:
    host: str
    port: int
    devices: Sequence[Cred]
    qos: int = 1
    concurrency: int = 100
    keepalive: int = 0
    retries: int = 3


@dataclass(frozen=True, slots=True)
class StormJob:
    """CONNECT storm: open every connection as fast as `concurrency` allows, SUBSCRIBE the good ones."""

    host: str
    port: int
    good: Sequence[Cred]  # expected to be accepted; each then subscribes to nxg/{serial}/cmd
    bad: Sequence[Cred] = ()  # expected to be refused (wrong token / wrong connection code)
    bad_addr: str | None = None  # local address the bad ones connect from (own lockout key)
    concurrency: int = 100
    timeout: float = 10.0  # per CONNECT→CONNACK, and again per SUBSCRIBE→SUBACK
    qos: int = 1
    keepalive: int = 0


@dataclass(slots=True)
class StormResult:
    attempts: int = 0  # finished attempts (accepted, refused or failed)
    accepted: int = 0  # CONNACK 0 and SUBACK granted
    refused: dict[int, int] = field(default_factory=dict)  # CONNACK return code → count
    bad_accepted: int = 0  # a "bad" credential that got CONNACK 0 (should not happen)
    sub_refused: int = 0  # CONNACK 0 but SUBACK 0x80
    failed: int = 0  # timeouts, resets, closed without CONNACK
    unfinished: int = 0  # still pending when the phase ended (cancelled)
    lost: int = 0  # accepted, then dropped by the broker before the phase ended
    t_start: float = 0.0
    t_end: float = 0.0  # last attempt finished
    connack_ms: list[float] = field(default_factory=list)  # accepted: TCP connect → CONNACK, sorted
    bad_addr: str | None = None  # as used (None: the bind failed, same address as the good ones)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Schedule:
    """Wall-clock times (s) shared by all workers of one phase."""

    t0: float  # publishing starts
    win0: float  # measurement window start (after warm-up)
    win1: float  # measurement window end = publishers stop
    grace_end: float  # subscriber stops counting backlog


@dataclass(slots=True)
class PubResult:
    connected: int = 0
    connect_failed: int = 0
    sent_window: int = 0
    acked_window: int = 0
    sent_total: int = 0
    acked_total: int = 0
    blocked_s: float = 0.0  # seconds (summed over sockets) the socket refused more data
    lost_connections: int = 0
    error: str | None = None
    ack_lat_ms: list[float] = field(default_factory=list)  # QoS 1: PUBLISH→PUBACK of in-window messages


@dataclass(slots=True)
class SubResult:
    recv_window: int = 0
    recv_backlog: int = 0
    recv_total: int = 0
    lat_ms: list[float] = field(default_factory=list)  # latencies of in-window messages (sampled)
    lat_pairs: list[tuple[int, float]] = field(default_factory=list)  # (payload ts ms, latency ms), keep_ts
    lat_count: int = 0
    lost: bool = False
    error: str | None = None


@dataclass(slots=True)
class IdleResult:
    connected: int = 0
    failed: int = 0
    t_start: float = 0.0
    t_end: float = 0.0
    lost: int = 0
    error: str | None = None
    errors: list[str] = field(default_factory=list)


def run_async(coro: Coroutine[Any, Any, R]) -> R:
    """asyncio.run on uvloop when it is installed."""
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    except ImportError:
        return asyncio.run(coro)


def start_serve(
    data_dir: Path, code: Path | None, args: list[str], pattern: str
) -> tuple[subprocess.Popen[str], dict[str, int]]:
    """`nxg-mqtt serve --data DATA ARGS` of this build, or of the tree in `code` (an older build run
    from its own PYTHONPATH), and two ports read from its banner: the banner lines matching
    `pattern`, whose first group names the port and whose second is the number."""
    cmd = [sys.executable, "-m", "nxg_mqtt.cli", "serve", "--data", str(data_dir), *args]
    env = {**os.environ, "PYTHONPATH": str(code)} if code is not None else None
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=code)
    which = "nxg-mqtt serve" if code is None else f"nxg-mqtt serve of {code}"
    ports: dict[str, int] = {}
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while len(ports) < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{which} exited during start-up")
        if found := re.search(pattern, line):
            ports[found.group(1)] = int(found.group(2))
    if len(ports) < 2:
        proc.kill()
        raise RuntimeError(f"{which} printed no ports")
    return proc, ports


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values; NaN when empty."""
    if not values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(values)))
    return values[min(rank, len(values)) - 1]


def split(items: Sequence[Any], parts: int) -> list[list[Any]]:
    parts = max(1, min(parts, len(items))) if items else 1
    return [list(items[i::parts]) for i in range(parts)]


class FrameClient(asyncio.Protocol):
    """A WebSocket client on a minimal frame parser (the benches' app sockets): waits for the
    101 answer, then hands each complete frame to `on_frame(opcode, payload, now_ms)`; a close
    frame's code lands in `closed_code`. Cheap enough that many share one process."""

    def __init__(self) -> None:
        self.buffer, self.open = bytearray(), False
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed_code: int | None = None

    def on_frame(self, opcode: int, payload: bytes, now: float) -> None:
        """One complete frame, `now` the receive time in ms since the epoch."""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.open:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[:end]).split(b"\r\n", 1)[0]
            del self.buffer[: end + 4]
            if b" 101 " not in status:
                self.handshake.set_exception(RuntimeError(status.decode()))
                return
            self.open = True
            self.handshake.set_result(None)
        buf, pos, now = self.buffer, 0, time.time() * 1000
        while len(buf) - pos >= 2:
            opcode, length, head = buf[pos] & 0x0F, buf[pos + 1] & 0x7F, 2
            if length == 126:
                if len(buf) - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if len(buf) - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if len(buf) - pos < head + length:
                break
            payload = bytes(buf[pos + head : pos + head + length])
            pos += head + length
            if opcode == 8:
                self.closed_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            else:
                self.on_frame(opcode, payload, now)
        del buf[:pos]
