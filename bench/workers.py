"""Load-generator processes: publishers, the telemetry subscriber, idle devices.

Each `*_main` is a process entry point taking a job and one end of a `multiprocessing.Pipe`.
Protocol on the pipe: the worker sends ("ready", result) once connected; the parent sends a
`Schedule` (or "stop" for idle workers); the worker sends ("result", result) and exits.
Any exception is reported as ("error", text).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import time
import traceback
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from bench.common import (
    CMD_TOPIC,
    TELEMETRY_TOPIC,
    Cred,
    IdleJob,
    IdleResult,
    PubJob,
    PubResult,
    Schedule,
    StormJob,
    StormResult,
    SubJob,
    SubResult,
    make_payload,
    run_async,
)
from bench.mqttproto import (
    PINGREQ_PACKET,
    PUBLISH,
    MqttConn,
    connect_packet,
    open_conn,
    publish_prefix,
    subscribe,
)

C = TypeVar("C", bound=MqttConn)
_pack_pid = struct.Struct("!H").pack


async def _recv(pipe: Connection) -> Any:
    """Blocking pipe.recv in a thread, so the event loop keeps serving sockets."""
    return await asyncio.get_running_loop().run_in_executor(None, pipe.recv)


async def _sleep_until(t: float) -> None:
    delay = t - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def connect_many(
    factory_for: Callable[[Cred], Callable[[], C]],
    host: str,
    port: int,
    creds: Sequence[Cred],
    concurrency: int,
    keepalive: int,
    retries: int = 2,
    after: Callable[[C, Cred], Coroutine[Any, Any, None]] | None = None,
    errors: list[str] | None = None,
) -> list[C]:
    """Connect every cred (bounded concurrency, a few retries); returns the live connections."""
    sem = asyncio.Semaphore(concurrency)
    out: list[C] = []

    async def one(cred: Cred) -> None:
        async with sem:
            for attempt in range(retries + 1):
                try:
                    conn = await open_conn(
                        factory_for(cred),
                        host,
                        port,
                        cred.client_id,
                        cred.username,
                        cred.password,
                        keepalive=keepalive,
                        timeout=15.0,
                    )
                    if after is not None:
                        await after(conn, cred)
                    out.append(conn)
                    return
                except (OSError, TimeoutError, PermissionError) as exc:
                    if attempt == retries:
                        if errors is not None and len(errors) < 5:
                            errors.append(f"{cred.client_id}: {exc!r}")
                        return
                    await asyncio.sleep(0.2 * (attempt + 1))

    await asyncio.gather(*(one(c) for c in creds))
    return out


# --------------------------------------------------------------------------------------------
# publishers


class _PubState:
    def __init__(self, job: PubJob) -> None:
        self.job = job
        self.running = False
        self.win0 = float("inf")
        self.win1 = float("inf")
        self.res = PubResult()


class _DevConn(MqttConn):
    def __init__(self, cred: Cred, state: _PubState) -> None:
        super().__init__()
        job = state.job
        self.state = state
        self.qos = job.qos
        self.size = job.payload_size
        topic = TELEMETRY_TOPIC.format(serial=cred.serial)
        self.prefix = publish_prefix(topic, job.qos, job.payload_size)
        self.seq = 0
        self.pid = 1
        self.inflight = 0
        self.batches_out = 0
        self.blocked_since = 0.0
        self.sent_at: deque[float] = deque()  # QoS 1: send time of each unacknowledged PUBLISH, in order
        self.on_puback = self._acked

    def build(self, count: int, ts: int) -> bytes:
        parts = []
        prefix, size = self.prefix, self.size
        seq = self.seq
        if self.qos:
            pid = self.pid
            for _ in range(count):
                parts.append(prefix + _pack_pid(pid) + make_payload(seq, ts, size))
                seq += 1
                pid = pid + 1 if pid < 65535 else 1
            self.pid = pid
        else:
            for _ in range(count):
                parts.append(prefix + make_payload(seq, ts, size))
                seq += 1
        self.seq = seq
        return b"".join(parts)

    def send(self, count: int, now: float, ping: bool = False) -> None:
        if count <= 0 or self.transport is None or self.transport.is_closing():
            return
        now_ms = int(now * 1000)
        data = self.build(count, now_ms)
        self.transport.write(data + PINGREQ_PACKET if ping else data)
        st = self.state
        st.res.sent_total += count
        # the subscriber's test on the same stamp: "delivered / sent" compares the same messages
        if st.win0 * 1000 <= now_ms < st.win1 * 1000:
            st.res.sent_window += count
        if self.qos:
            self.inflight += count
            self.sent_at.extend(itertools.repeat(now, count))

    def _acked(self, count: int) -> None:
        """QoS 1: PUBACKs free in-flight slots; refill them (saturation). PUBACKs come in the order
        of the PUBLISHes (MQTT-4.6.0-2), so the oldest send times are theirs."""
        st = self.state
        now = time.time()
        sent_at, lat = self.sent_at, st.res.ack_lat_ms
        for _ in range(min(count, len(sent_at))):
            t = sent_at.popleft()
            if st.win0 <= t < st.win1:
                lat.append((now - t) * 1000.0)
        st.res.acked_total += count
        if st.win0 <= now < st.win1:
            st.res.acked_window += count
        self.inflight -= count
        if st.running and st.job.mode == "sat" and now < st.win1:
            self.send(st.job.inflight - self.inflight, now)

    def _ponged(self, count: int) -> None:
        """QoS 0 saturation: each PINGRESP says the broker has read one more batch; send another."""
        st = self.state
        self.batches_out -= count
        now = time.time()
        if st.running and now < st.win1:
            for _ in range(count):
                self.send(st.job.batch, now, ping=True)
                self.batches_out += 1

    def start_sat(self, now: float) -> None:
        job = self.state.job
        if self.qos:
            self.send(job.inflight, now)
        else:
            self.on_pingresp = self._ponged
            for _ in range(job.q0_batches):
                self.send(job.batch, now, ping=True)
                self.batches_out += 1

    def pause_writing(self) -> None:
        super().pause_writing()
        self.blocked_since = time.time()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.blocked_since:
            self.state.res.blocked_s += time.time() - self.blocked_since
            self.blocked_since = 0.0


async def _paced(conns: list[_DevConn], st: _PubState, sched: Schedule) -> None:
    rate = st.job.rate
    sent = 0
    i = 0
    n_conns = len(conns)
    while True:
        now = time.time()
        if now >= sched.win1:
            return
        due = int((now - sched.t0) * rate) - sent
        for _ in range(max(due, 0)):
            conns[i % n_conns].send(1, now)
            i += 1
        sent += max(due, 0)
        await asyncio.sleep(0.002)


async def _publisher(job: PubJob, pipe: Connection) -> None:
    st = _PubState(job)
    conns = await connect_many(
        lambda cred: lambda: _DevConn(cred, st),
        job.host,
        job.port,
        job.devices,
        job.connect_concurrency,
        job.keepalive,
    )
    st.res.connected = len(conns)
    st.res.connect_failed = len(job.devices) - len(conns)
    pipe.send(("ready", st.res))
    sched = await _recv(pipe)
    if not isinstance(sched, Schedule):
        for c in conns:
            c.close()
        return
    st.win0, st.win1 = sched.win0, sched.win1
    await _sleep_until(sched.t0)
    st.running = True
    if not conns:
        await _sleep_until(sched.win1)
    elif job.mode == "paced":
        await _paced(conns, st, sched)
    else:
        now = time.time()
        for c in conns:
            c.start_sat(now)
        await _sleep_until(sched.win1)
    st.running = False
    now = time.time()
    for c in conns:
        if c.blocked_since:
            st.res.blocked_s += now - c.blocked_since
            c.blocked_since = 0.0
    # let late PUBACKs of paced runs arrive (they are counted in acked_total only)
    if job.mode == "paced" and job.qos:
        await asyncio.sleep(0.5)
    st.res.lost_connections = sum(1 for c in conns if c.lost.done())
    pipe.send(("result", st.res))
    for c in conns:
        c.close()
    await asyncio.sleep(0.2)


# --------------------------------------------------------------------------------------------
# telemetry subscriber


class _SubConn(MqttConn):
    def __init__(self, job: SubJob) -> None:
        super().__init__()
        self.job = job
        self.res = SubResult()
        self.sched: Schedule | None = None
        self.win0_ms = float("inf")
        self.win1_ms = float("inf")

    def on_packets(self, packets: list[tuple[int, bytes]]) -> None:
        now = time.time()
        count = 0
        acks: list[bytes] = []
        lat = self.job.latency and self.sched is not None
        keep_ts = self.job.keep_ts
        now_ms = now * 1000.0
        lat_list = self.res.lat_ms
        pairs = self.res.lat_pairs
        for first, body in packets:
            if first & 0xF0 != PUBLISH:
                super().on_packets([(first, body)])
                continue
            count += 1
            tlen = (body[0] << 8) | body[1]
            start = 2 + tlen
            if first & 0x06:
                acks.append(b"\x40\x02" + body[start : start + 2])
                start += 2
            if lat:
                i = body.find(b'"ts":', start)
                if i >= 0:
                    ts = int(body[i + 5 : body.index(b",", i)])
                    if self.win0_ms <= ts < self.win1_ms:
                        lat_list.append(now_ms - ts)
                        if keep_ts:
                            pairs.append((ts, now_ms - ts))
        if acks and self.transport is not None:
            self.transport.write(b"".join(acks))
        res = self.res
        res.recv_total += count
        sched = self.sched
        if sched is not None:
            if sched.win0 <= now < sched.win1:
                res.recv_window += count
            elif sched.win1 <= now < sched.grace_end:
                res.recv_backlog += count


async def _subscriber(job: SubJob, pipe: Connection) -> None:
    conn = await open_conn(
        lambda: _SubConn(job),
        job.host,
        job.port,
        job.cred.client_id,
        job.cred.username,
        job.cred.password,
        keepalive=0,
        write_high_water=1 << 20,
    )
    await subscribe(conn, job.topic_filter, job.qos)
    pipe.send(("ready", conn.res))
    sched = await _recv(pipe)
    if not isinstance(sched, Schedule):
        conn.close()
        return
    conn.win0_ms, conn.win1_ms = sched.win0 * 1000.0, sched.win1 * 1000.0
    conn.sched = sched
    await _sleep_until(sched.grace_end)
    conn.res.lost = conn.lost.done()
    conn.res.lat_count = len(conn.res.lat_ms)
    conn.res.lat_ms.sort()
    pipe.send(("result", conn.res))
    conn.close()
    await asyncio.sleep(0.1)


# --------------------------------------------------------------------------------------------
# idle devices


async def _idle(job: IdleJob, pipe: Connection) -> None:
    res = IdleResult(t_start=time.time())

    async def sub(conn: MqttConn, cred: Cred) -> None:
        await subscribe(conn, CMD_TOPIC.format(serial=cred.serial), job.qos, timeout=15.0)

    conns = await connect_many(
        lambda cred: MqttConn,
        job.host,
        job.port,
        job.devices,
        job.concurrency,
        job.keepalive,
        retries=job.retries,
        after=sub,
        errors=res.errors,
    )
    res.t_end = time.time()
    res.connected = len(conns)
    res.failed = len(job.devices) - len(conns)
    pipe.send(("ready", res))
    await _recv(pipe)  # "stop"
    res.lost = sum(1 for c in conns if c.lost.done())
    for c in conns:
        c.close()
    await asyncio.sleep(0.5)
    pipe.send(("result", res))


# --------------------------------------------------------------------------------------------
# CONNECT storm


def _usable_addr(addr: str | None) -> str | None:
    """`addr` if a socket can bind to it here (any 127.x.y.z on Linux loopback), else None."""
    if not addr:
        return None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((addr, 0))
        return addr
    except OSError:
        return None


def _interleave(good: Sequence[Cred], bad: Sequence[Cred]) -> list[tuple[Cred, bool]]:
    """Good and bad attempts spread evenly over the storm (bad ones are not all at the start/end)."""
    total = len(good) + len(bad)
    out: list[tuple[Cred, bool]] = []
    gi = bi = 0
    for i in range(total):
        # place bad attempt k at position ≈ (k + 0.5) · total / len(bad)
        if bi < len(bad) and (gi >= len(good) or (bi + 0.5) * total / len(bad) <= i + 1):
            out.append((bad[bi], True))
            bi += 1
        else:
            out.append((good[gi], False))
            gi += 1
    return out


async def _storm(job: StormJob, pipe: Connection) -> None:
    res = StormResult(bad_addr=_usable_addr(job.bad_addr))
    if job.bad_addr and res.bad_addr is None:
        res.errors.append(f"cannot bind {job.bad_addr}: bad CONNECTs come from the same address as the good ones")
    pipe.send(("ready", res))
    sched = await _recv(pipe)
    if not isinstance(sched, Schedule):
        return
    loop = asyncio.get_running_loop()
    attempts = _interleave(job.good, job.bad)
    sem = asyncio.Semaphore(max(1, job.concurrency))
    conns: list[MqttConn] = []
    refused = res.refused

    def note(msg: str) -> None:
        if len(res.errors) < 5:
            res.errors.append(msg)

    async def one(cred: Cred, bad: bool) -> None:
        async with sem:
            proto: MqttConn | None = None
            cancelled = False
            t = time.time()
            try:
                local = (res.bad_addr, 0) if bad and res.bad_addr else None
                async with asyncio.timeout(job.timeout):
                    _, proto = await loop.create_connection(MqttConn, job.host, job.port, local_addr=local)
                    proto.write(connect_packet(cred.client_id, cred.username, cred.password, job.keepalive))
                    code = await proto.connack
                if code != 0:
                    refused[code] = refused.get(code, 0) + 1
                    proto.close(graceful=False)
                    return
                if bad:
                    res.bad_accepted += 1
                    proto.close()
                    return
                res.connack_ms.append((time.time() - t) * 1000.0)
                await subscribe(proto, CMD_TOPIC.format(serial=cred.serial), job.qos, timeout=job.timeout)
                res.accepted += 1
                conns.append(proto)
                proto = None
            except PermissionError:
                res.sub_refused += 1
            except (OSError, TimeoutError) as exc:
                res.failed += 1
                note(f"{cred.client_id}: {exc!r}")
            except asyncio.CancelledError:
                cancelled = True
                raise
            finally:
                if proto is not None:
                    proto.close(graceful=False)
                if not cancelled:
                    res.attempts += 1
                    res.t_end = max(res.t_end, time.time())

    await _sleep_until(sched.t0)
    res.t_start = time.time()
    tasks = [asyncio.ensure_future(one(cred, bad)) for cred, bad in attempts]
    # nothing new may start after the telemetry stopped: what is still pending then is cancelled
    _done, pending = await asyncio.wait(tasks, timeout=max(0.0, sched.win1 - time.time()))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    res.unfinished = len(pending)
    await _sleep_until(sched.grace_end)  # the storm clients stay connected until the phase ends
    res.lost = sum(1 for c in conns if c.lost.done())
    res.connack_ms.sort()
    pipe.send(("result", res))
    for c in conns:
        c.close()
    await asyncio.sleep(0.3)


# --------------------------------------------------------------------------------------------
# entry points


def _entry(coro_fn: Callable[[Any, Connection], Coroutine[Any, Any, None]], job: Any, pipe: Connection) -> None:
    try:
        run_async(coro_fn(job, pipe))
    except KeyboardInterrupt:
        pass
    except BaseException:
        with contextlib.suppress(OSError):
            pipe.send(("error", traceback.format_exc(limit=5)))


def publisher_main(job: PubJob, pipe: Connection) -> None:
    _entry(_publisher, job, pipe)


def subscriber_main(job: SubJob, pipe: Connection) -> None:
    _entry(_subscriber, job, pipe)


def idle_main(job: IdleJob, pipe: Connection) -> None:
    _entry(_idle, job, pipe)


def storm_main(job: StormJob, pipe: Connection) -> None:
    _entry(_storm, job, pipe)
