"""Phase runner: spawns the worker processes for one measurement and collects their results."""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import multiprocessing.connection as mpc
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from bench.common import (
    GRACE_S,
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
    percentile,
    split,
)
from bench.nxg import Store
from bench.workers import idle_main, publisher_main, storm_main, subscriber_main


class WorkerError(RuntimeError):
    pass


class Target(Protocol):
    """The broker under test, as the runner sees it (bench.brokers.BrokerProc or an external one)."""

    host: str
    port: int
    subscriber: Cred

    @property
    def pid(self) -> int | None: ...

    def rss(self) -> int: ...

    def cpu_times(self) -> float: ...

    def cpu_by_process(self) -> dict[str, float]: ...


@dataclass
class PhaseResult:
    label: str
    mode: str
    qos: int
    rate: float
    devices: int
    window_s: float
    accepted: float = math.nan  # msg/s: QoS 0 written, QoS 1 PUBACKed, inside the window
    delivered: float = math.nan  # msg/s received by the subscriber inside the window
    backlog: int = 0  # messages the subscriber got after the publishers stopped (grace)
    sent: int = 0
    sent_window: int = 0  # messages stamped inside the window (the subscriber's lat_n counts the same)
    received_total: int = 0
    lat_n: int = 0
    lat_p50: float = math.nan
    lat_p99: float = math.nan
    lat_max: float = math.nan
    stored: float = math.nan  # NXG: rows/s with stored_at inside the window
    stored_backlog: int = 0
    store_n: int = 0
    store_p50: float = math.nan
    store_p99: float = math.nan
    store_max: float = math.nan
    ack_n: int = 0  # QoS 1: PUBLISH→PUBACK of the messages sent inside the window
    ack_p50: float = math.nan
    ack_p99: float = math.nan
    broker_cpu: float = math.nan  # % of one core during the window (the broker and its children)
    cpu_procs: dict[str, float] = field(default_factory=dict)  # the same by process name
    blocked: float = math.nan  # fraction of socket-time the publishers were blocked
    rss_peak: int = 0  # broker RSS, sampled every 0.25 s during the phase
    connect_failed: int = 0
    lost_connections: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Lat:
    """Latency figures (ms) of one sub-window: n messages of `sent` ≈ rate × window."""

    t0: float = math.nan  # window, wall-clock s
    t1: float = math.nan
    sent: float = 0.0
    n: int = 0
    p50: float = math.nan
    p99: float = math.nan
    max: float = math.nan

    @classmethod
    def of(cls, values: list[float], t0: float, t1: float, rate: float) -> Lat:
        values.sort()
        lat = cls(t0, t1, rate * max(0.0, t1 - t0), len(values))
        if values:
            lat.p50, lat.p99, lat.max = percentile(values, 50), percentile(values, 99), values[-1]
        return lat

    @property
    def seconds(self) -> float:
        return self.t1 - self.t0


@dataclass
class StormPhaseResult:
    """Paced telemetry with a quiet window, then a CONNECT storm (second window), in one run."""

    label: str
    qos: int
    rate: float
    devices: int
    storm_n: int  # connections attempted
    storm_bad: int  # of which expected to be refused
    quiet: Lat = field(default_factory=Lat)  # publish→delivered, quiet window before the storm
    storm: Lat = field(default_factory=Lat)  # publish→delivered, from storm start to its last CONNECT
    quiet_store: Lat = field(default_factory=Lat)  # NXG: publish→stored, same windows
    storm_store: Lat = field(default_factory=Lat)
    conn: StormResult = field(default_factory=StormResult)
    cpu_quiet: float = math.nan  # broker CPU, % of a core
    cpu_storm: float = math.nan
    budget_s: float = math.nan  # how long the storm was allowed to run while telemetry flowed
    rss_peak: int = 0
    lost_connections: int = 0  # publishers
    errors: list[str] = field(default_factory=list)

    @property
    def p99_ratio(self) -> float:
        q, s = self.quiet.p99, self.storm.p99
        return s / q if q > 0 and not math.isnan(s) else math.nan

    @property
    def storm_seconds(self) -> float:
        """First CONNECT sent → last attempt finished."""
        c = self.conn
        return c.t_end - c.t_start if c.attempts and c.t_end > c.t_start else math.nan

    @property
    def connect_rate(self) -> float:
        """Finished CONNECT attempts (accepted or refused) per second."""
        secs = self.storm_seconds
        return self.conn.attempts / secs if secs > 0 else math.nan

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["p99_ratio"] = self.p99_ratio
        out["storm_seconds"] = self.storm_seconds
        out["connect_rate"] = self.connect_rate
        return out


@dataclass
class IdleSession:
    procs: list[BaseProcess]
    pipes: list[Connection]
    count: int
    connected: int = 0
    failed: int = 0
    rate: float = math.nan  # CONNECT+SUBSCRIBE per second
    seconds: float = math.nan
    rss_before: int = 0
    rss_after: int = 0
    settle_s: float = math.nan  # from the last SUBACK until the broker was idle
    settle_cpu: float = math.nan  # CPU s the broker spent meanwhile (the connects' follow-up work)
    errors: list[str] = field(default_factory=list)

    @property
    def kb_per_device(self) -> float:
        if not self.connected:
            return math.nan
        return (self.rss_after - self.rss_before) / self.connected / 1024.0


Tick = Callable[[str], None]


class Runner:
    def __init__(
        self,
        publishers: int,
        idle_procs: int,
        tick: Tick | None = None,
        inflight: int = 16,
        batch: int = 16,
        q0_batches: int = 4,
    ) -> None:
        self.ctx = mp.get_context("spawn")
        self.inflight, self.batch, self.q0_batches = inflight, batch, q0_batches
        self.publishers = publishers
        self.idle_procs = idle_procs
        self.procs: list[BaseProcess] = []
        self.tick: Tick = tick or (lambda _msg: None)
        self.watch: Target | None = None  # sampled for peak RSS while waiting
        self.rss_peak = 0

    # -- process plumbing -------------------------------------------------------------------
    def spawn(self, target: Callable[[Any, Connection], None], job: Any) -> tuple[BaseProcess, Connection]:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=target, args=(job, child), daemon=True)
        proc.start()
        child.close()
        self.procs.append(proc)
        return proc, parent

    def collect(self, pipes: Sequence[Connection], tag: str, timeout: float, what: str) -> list[Any]:
        """One message `tag` from every pipe; raises WorkerError on an error report or timeout."""
        out: dict[int, Any] = {}
        deadline = time.time() + timeout
        while len(out) < len(pipes):
            remaining = deadline - time.time()
            if remaining <= 0:
                raise WorkerError(f"{what}: {len(pipes) - len(out)} worker(s) silent after {timeout:.0f}s")
            self.tick(what)
            ready = mpc.wait([p for i, p in enumerate(pipes) if i not in out], timeout=min(0.25, remaining))
            for p in ready:
                assert isinstance(p, Connection)
                i = pipes.index(p)
                try:
                    kind, payload = p.recv()
                except EOFError as exc:
                    raise WorkerError(f"{what}: worker exited without a report") from exc
                if kind == "error":
                    last = [ln for ln in str(payload).splitlines() if ln.strip()][-1:] or ["?"]
                    raise WorkerError(f"{what}: worker failed: {last[0].strip()}\n{payload}")
                if kind != tag:
                    raise WorkerError(f"{what}: expected {tag!r}, got {kind!r}")
                out[i] = payload
        return [out[i] for i in range(len(pipes))]

    def wait_until(self, t: float, what: str) -> None:
        while True:
            left = t - time.time()
            if left <= 0:
                return
            self.tick(f"{what} ({left:4.1f}s)")
            if self.watch is not None:
                self.rss_peak = max(self.rss_peak, self.watch.rss())
            time.sleep(min(0.25, left))

    def reap(self, procs: Sequence[BaseProcess], timeout: float = 5.0) -> None:
        deadline = time.time() + timeout
        for proc in procs:
            proc.join(max(0.0, deadline - time.time()))
            if proc.is_alive():
                proc.terminate()
                proc.join(2)
            if proc.is_alive():
                proc.kill()
                proc.join(2)
        for proc in procs:
            if proc in self.procs:
                self.procs.remove(proc)

    def shutdown(self) -> None:
        """Stop every worker still running (Ctrl-C / errors)."""
        for proc in list(self.procs):
            if proc.is_alive():
                proc.terminate()
        self.reap(list(self.procs), timeout=3.0)

    # -- measurements -----------------------------------------------------------------------
    def settle(
        self, bp: Target, what: str, max_s: float = 12.0, below: float = 15.0, window: float = 0.4
    ) -> tuple[float, float]:
        """Wait (bounded) until the broker (with its children: Mosquitto under the serving process)
        uses under `below` % of a core over `window` s, so a backlog does not leak into the next
        phase; returns (seconds waited, CPU s the broker spent meanwhile)."""
        started = time.time()
        if bp.pid is None:
            time.sleep(1.0)
            return time.time() - started, math.nan
        cpu0 = last = bp.cpu_times()
        while time.time() - started < max_s:
            self.tick(f"{what}: broker settling")
            time.sleep(window)
            now = bp.cpu_times()
            if now - last < below / 100.0 * window:
                break
            last = now
        return time.time() - started, bp.cpu_times() - cpu0

    def phase(
        self,
        bp: Target,
        label: str,
        devices: Sequence[Cred],
        mode: str,
        qos: int,
        duration: float,
        warmup: float,
        rate: float = 0.0,
        subscriber: bool = True,
        grace: float = GRACE_S,
        store: Store | None = None,
        store_latency: bool | None = None,
    ) -> PhaseResult:
        res = PhaseResult(label, mode, qos, rate, len(devices), duration)
        self.watch, self.rss_peak = bp, 0
        procs: list[BaseProcess] = []
        try:
            sub_pipe: Connection | None = None
            if subscriber:
                sub_job = SubJob(bp.host, bp.port, bp.subscriber, qos, latency=(mode == "paced"))
                proc, sub_pipe = self.spawn(subscriber_main, sub_job)
                procs.append(proc)
                self.collect([sub_pipe], "ready", 30, f"{label}: subscriber connecting")
            pub_pipes: list[Connection] = []
            parts = split(list(devices), self.publishers)
            for part in parts:
                job = PubJob(
                    bp.host,
                    bp.port,
                    part,
                    mode,
                    qos,
                    rate=rate / len(parts),
                    inflight=self.inflight,
                    batch=self.batch,
                    q0_batches=self.q0_batches,
                )
                proc, pipe = self.spawn(publisher_main, job)
                procs.append(proc)
                pub_pipes.append(pipe)
            ready: list[PubResult] = self.collect(pub_pipes, "ready", 60, f"{label}: publishers connecting")
            res.connect_failed = sum(r.connect_failed for r in ready)
            t0 = time.time() + 0.3
            sched = Schedule(t0, t0 + warmup, t0 + warmup + duration, t0 + warmup + duration + grace)
            all_pipes = ([sub_pipe] if sub_pipe else []) + pub_pipes
            for pipe in all_pipes:
                pipe.send(sched)
            self.wait_until(sched.win0, f"{label}: warm-up")
            split0 = bp.cpu_by_process()
            self.wait_until(sched.win1, f"{label}: measuring")
            split1 = bp.cpu_by_process()
            res.cpu_procs = {name: 100.0 * (cpu - split0.get(name, 0.0)) / duration for name, cpu in split1.items()}
            res.broker_cpu = sum(res.cpu_procs.values()) if res.cpu_procs else math.nan
            pubs: list[PubResult] = self.collect(pub_pipes, "result", 30, f"{label}: publishers stopping")
            sub: SubResult | None = None
            if sub_pipe is not None:
                self.wait_until(sched.grace_end, f"{label}: grace")
                sub = self.collect([sub_pipe], "result", 30, f"{label}: subscriber")[0]
            res.sent = sum(p.sent_total for p in pubs)
            written = res.sent_window = sum(p.sent_window for p in pubs)
            acked = sum(p.acked_window for p in pubs)
            res.accepted = (acked if qos else written) / duration
            ack_lat = sorted(v for p in pubs for v in p.ack_lat_ms)
            if ack_lat:
                res.ack_n, res.ack_p50, res.ack_p99 = len(ack_lat), percentile(ack_lat, 50), percentile(ack_lat, 99)
            conns = sum(p.connected for p in pubs)
            if conns:
                res.blocked = sum(p.blocked_s for p in pubs) / (conns * (sched.win1 - sched.t0))
            res.lost_connections = sum(p.lost_connections for p in pubs)
            if sub is not None:
                res.delivered = sub.recv_window / duration
                res.backlog = sub.recv_backlog
                res.received_total = sub.recv_total
                if sub.lost:
                    res.errors.append("subscriber connection lost")
                if sub.lat_ms:
                    lat = sub.lat_ms
                    res.lat_n = len(lat)
                    res.lat_p50, res.lat_p99, res.lat_max = percentile(lat, 50), percentile(lat, 99), lat[-1]
            if store is not None:
                w0, w1, ge = sched.win0 * 1000, sched.win1 * 1000, sched.grace_end * 1000
                if sub is None:
                    self.wait_until(sched.grace_end, f"{label}: grace")
                res.stored = store.count_stored(w0, w1) / duration
                res.stored_backlog = store.count_stored(w1, ge)
                if store_latency or (store_latency is None and mode == "paced"):
                    res.store_n, res.store_p50, res.store_p99, res.store_max = store.store_latency(w0, w1)
            if res.connect_failed:
                res.errors.append(f"{res.connect_failed} publisher connects failed")
            if res.lost_connections:
                res.errors.append(f"{res.lost_connections} publisher connections dropped")
        except WorkerError as exc:
            res.errors.append(str(exc))
        finally:
            self.reap(procs)
            res.rss_peak = max(self.rss_peak, bp.rss())
            self.watch = None
        return res

    def storm_phase(
        self,
        bp: Target,
        label: str,
        devices: Sequence[Cred],
        storm: StormJob,
        qos: int,
        rate: float,
        quiet: float,
        budget: float,
        warmup: float,
        grace: float = GRACE_S,
        store: Store | None = None,
        min_window: float = 1.0,
    ) -> StormPhaseResult:
        """Paced telemetry; after warm-up a quiet window of `quiet` s, then the storm starts and the
        publishers keep going for `budget` s. The storm window runs from the storm start to its last
        finished CONNECT (at least `min_window` s, at most `budget` s); latencies are split by the
        payload's send time."""
        res = StormPhaseResult(label, qos, rate, len(devices), len(storm.good) + len(storm.bad), len(storm.bad))
        res.budget_s = budget
        self.watch, self.rss_peak = bp, 0
        procs: list[BaseProcess] = []
        try:
            sub_job = SubJob(bp.host, bp.port, bp.subscriber, qos, latency=True, keep_ts=True)
            proc, sub_pipe = self.spawn(subscriber_main, sub_job)
            procs.append(proc)
            proc, storm_pipe = self.spawn(storm_main, storm)
            procs.append(proc)
            self.collect([sub_pipe, storm_pipe], "ready", 30, f"{label}: subscriber connecting")
            pub_pipes: list[Connection] = []
            parts = split(list(devices), self.publishers)
            for part in parts:
                job = PubJob(bp.host, bp.port, part, "paced", qos, rate=rate / len(parts))
                proc, pipe = self.spawn(publisher_main, job)
                procs.append(proc)
                pub_pipes.append(pipe)
            ready: list[PubResult] = self.collect(pub_pipes, "ready", 60, f"{label}: publishers connecting")
            if sum(r.connect_failed for r in ready):
                res.errors.append(f"{sum(r.connect_failed for r in ready)} publisher connects failed")
            t0 = time.time() + 0.3
            win0 = t0 + warmup
            s0 = win0 + quiet
            win1 = s0 + budget
            sched = Schedule(t0, win0, win1, win1 + grace)
            for pipe in [sub_pipe, *pub_pipes]:
                pipe.send(sched)
            # the storm: starts at s0, no new attempt after win1, holds its connections to the end
            storm_pipe.send(Schedule(s0, s0, win1, win1 + grace))
            self.wait_until(win0, f"{label}: warm-up")
            cpu0 = bp.cpu_times()
            self.wait_until(s0, f"{label}: quiet window")
            # broker CPU sampled every 0.1 s through the storm, to cut out the storm window afterwards
            cpu_samples = [(time.time(), bp.cpu_times())]
            while time.time() < win1:
                self.tick(f"{label}: CONNECT storm ({win1 - time.time():4.1f}s)")
                self.rss_peak = max(self.rss_peak, bp.rss())
                time.sleep(max(0.0, min(0.1, win1 - time.time())))
                cpu_samples.append((time.time(), bp.cpu_times()))
            res.cpu_quiet = 100.0 * (cpu_samples[0][1] - cpu0) / (cpu_samples[0][0] - win0)
            pubs: list[PubResult] = self.collect(pub_pipes, "result", 30, f"{label}: publishers stopping")
            res.lost_connections = sum(p.lost_connections for p in pubs)
            self.wait_until(win1 + grace, f"{label}: grace")
            sub: SubResult = self.collect([sub_pipe], "result", 30, f"{label}: subscriber")[0]
            res.conn = self.collect([storm_pipe], "result", 30, f"{label}: storm clients")[0]
            c = res.conn
            s1 = min(win1, max(c.t_end, s0 + min_window)) if c.attempts else win1
            t_a, c_a = cpu_samples[0]
            t_b, c_b = next((x for x in cpu_samples if x[0] >= s1), cpu_samples[-1])
            res.cpu_storm = 100.0 * (c_b - c_a) / (t_b - t_a) if t_b > t_a else math.nan
            q_ms, s_ms = [], []
            for ts, lat in sub.lat_pairs:
                if win0 * 1000 <= ts < s0 * 1000:
                    q_ms.append(lat)
                elif s0 * 1000 <= ts < s1 * 1000:
                    s_ms.append(lat)
            res.quiet = Lat.of(q_ms, win0, s0, rate)
            res.storm = Lat.of(s_ms, s0, s1, rate)
            if store is not None:
                for attr, (a, b) in (("quiet_store", (win0, s0)), ("storm_store", (s0, s1))):
                    n, p50, p99, mx = store.store_latency(a * 1000, b * 1000)
                    setattr(res, attr, Lat(a, b, rate * (b - a), n, p50, p99, mx))
            if sub.lost:
                res.errors.append("subscriber connection lost")
            if res.lost_connections:
                res.errors.append(f"{res.lost_connections} publisher connections dropped")
            if c.unfinished:
                res.errors.append(f"storm: {c.unfinished} CONNECTs unfinished after {budget:g} s (cancelled)")
            res.errors.extend(f"storm: {e}" for e in c.errors[:3])
        except WorkerError as exc:
            res.errors.append(str(exc))
        finally:
            self.reap(procs)
            res.rss_peak = max(self.rss_peak, bp.rss())
            self.watch = None
        return res

    def connect_idle(self, bp: Target, creds: Sequence[Cred], label: str) -> IdleSession:
        time.sleep(0.5)
        session = IdleSession([], [], len(creds), rss_before=bp.rss())
        for part in split(list(creds), self.idle_procs):
            proc, pipe = self.spawn(idle_main, IdleJob(bp.host, bp.port, part))
            session.procs.append(proc)
            session.pipes.append(pipe)
        try:
            results: list[IdleResult] = self.collect(
                session.pipes, "ready", 120 + len(creds) / 50, f"{label}: connecting {len(creds)} idle devices"
            )
        except WorkerError as exc:
            session.errors.append(str(exc))
            return session
        session.connected = sum(r.connected for r in results)
        session.failed = sum(r.failed for r in results)
        for r in results:
            session.errors.extend(r.errors[:2])
        t_start = min(r.t_start for r in results)
        t_end = max(r.t_end for r in results)
        session.seconds = t_end - t_start
        session.rate = session.connected / session.seconds if session.seconds > 0 else math.nan
        # until the broker is idle: on the Mosquitto profile every login is reported to the serving
        # process afterwards (presence, the connection log, retained presence), and that work must
        # not run into the first window
        session.settle_s, session.settle_cpu = self.settle(
            bp, f"{label}: idle connected", max_s=60.0, below=5.0, window=0.5
        )
        session.rss_after = bp.rss()
        return session

    def release_idle(self, session: IdleSession, label: str) -> int:
        """Disconnect the idle devices; returns how many had been dropped by the broker meanwhile."""
        lost = 0
        for pipe in session.pipes:
            with contextlib.suppress(OSError):
                pipe.send("stop")
        try:
            results: list[IdleResult] = self.collect(session.pipes, "result", 60, f"{label}: idle disconnect")
            lost = sum(r.lost for r in results)
        except WorkerError as exc:
            session.errors.append(str(exc))
        self.reap(session.procs)
        return lost
