"""Broker benchmark: plain amqtt (a) vs the NXG broker (b) vs Mosquitto (c).

    .venv/bin/python -m bench.broker_bench [--devices 200] [--idle-devices 5000] [--duration 5]
                                            [--quick] [--only a,b,c] [--json out.json]

See bench/README.md for what every row and column means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from bench.affinity import Pin, PinError, parse_pin
from bench.brokers import (
    BrokerProc,
    BrokerUnavailable,
    mosquitto_path,
    new_secret,
    nxg_available,
    start_amqtt,
    start_mosquitto,
    start_nxg,
    start_nxg_mosquitto,
)
from bench.common import GRACE_S, Cred, StormJob, percentile
from bench.nxg import Store, provision, serials
from bench.runner import IdleSession, PhaseResult, Runner, StormPhaseResult

# (d): the same NXG system on Mosquitto (`serve --broker mosquitto`, README "Scaling out")
BROKERS: dict[str, str] = {"a": "amqtt", "b": "nxg", "c": "mosquitto", "d": "nxg-mosquitto"}
TITLES: dict[str, str] = {"a": "(a) amqtt", "b": "(b) NXG", "c": "(c) mosquitto", "d": "(d) NXG/mosquitto"}
KINDS = ("q0", "q1", "paced")


@dataclass
class Config:
    devices: int
    idle_devices: int
    duration: float
    warmup: float
    grace: float
    only: list[str]
    publishers: int
    idle_procs: int
    inflight: int
    q0_batch: int
    q0_window: int
    paced_rate: float
    paced_rate_idle: float
    paced_qos: int
    gen_check: bool
    amqtt_uvloop: bool
    mosquitto_inflight: int
    json_path: Path | None
    keep: bool
    storm: int = 500
    storm_rate: float = 1000.0
    storm_bad: float = 0.2
    storm_budget: float = 8.0
    storm_concurrency: int = 100
    storm_bad_addr: str = "127.0.0.2"
    storm_bad_kind: str = "mixed"  # mixed: wrong tokens + wrong pairing codes; unknown: unknown user names
    storm_only: bool = False  # only the storm phase, on the 0-idle broker
    loop_stalls: bool = False  # NXG: record its event loop's late timer ticks (bench/loopmon)
    pin: Pin | None = None  # --pin: broker CPUs / the bench's own processes' CPUs (bench/affinity.py)

    @property
    def idle_counts(self) -> list[int]:
        return [0, self.idle_devices] if self.idle_devices > 0 and not self.storm_only else [0]

    @property
    def kinds(self) -> tuple[str, ...]:
        return () if self.storm_only else KINDS


@dataclass
class BrokerReport:
    key: str
    name: str
    available: bool = True
    reason: str = ""
    phases: dict[str, PhaseResult] = field(default_factory=dict)  # "{idle}:{kind}"
    idle: IdleSession | None = None
    idle_lost: int = 0
    rss_start: dict[int, int] = field(default_factory=dict)  # fresh broker, per idle count
    rss_peak: dict[int, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    storm: StormPhaseResult | None = None  # CONNECT storm, on the 0-idle broker
    loop_stalls: LoopStats | None = None  # --loop-stalls

    def get(self, idle: int, kind: str) -> PhaseResult | None:
        return self.phases.get(f"{idle}:{kind}")

    def as_dict(self) -> dict[str, Any]:
        idle = None
        if self.idle is not None:
            s = self.idle
            idle = {
                "count": s.count,
                "connected": s.connected,
                "failed": s.failed,
                "seconds": s.seconds,
                "connect_rate": s.rate,
                "rss_before": s.rss_before,
                "rss_after": s.rss_after,
                "kb_per_device": s.kb_per_device,
                "settle_s": s.settle_s,
                "settle_cpu_s": s.settle_cpu,
                "dropped_while_idle": self.idle_lost,
                "errors": s.errors,
            }
        return {
            "broker": self.name,
            "available": self.available,
            "reason": self.reason,
            "rss_start": self.rss_start,
            "rss_peak": self.rss_peak,
            "idle": idle,
            "phases": {k: v.as_dict() for k, v in self.phases.items()},
            "storm": self.storm.as_dict() if self.storm is not None else None,
            "notes": self.notes,
            "loop_stalls": asdict(self.loop_stalls) if self.loop_stalls is not None else None,
        }


# --------------------------------------------------------------------------------------------
# running


class Bench:
    def __init__(self, cfg: Config, progress: Progress, console: Console) -> None:
        self.cfg = cfg
        self.progress = progress
        self.console = console
        self.task = progress.add_task("starting", total=self.total_steps())
        self.runner = Runner(
            cfg.publishers,
            cfg.idle_procs,
            tick=self.tick,
            inflight=cfg.inflight,
            batch=cfg.q0_batch,
            q0_batches=cfg.q0_window,
        )
        self.workdir = Path(tempfile.mkdtemp(prefix="nxg-bench-"))
        self.brokers: list[BrokerProc] = []
        self.generator: dict[str, PhaseResult] = {}

    def total_steps(self) -> int:
        per_broker = sum(self.steps_per_idle(i) for i in self.cfg.idle_counts)
        return len(self.cfg.only) * per_broker + (2 if self.cfg.gen_check else 0)

    def tick(self, msg: str) -> None:
        self.progress.update(self.task, description=msg)

    def step(self) -> None:
        self.progress.advance(self.task)

    def cleanup(self) -> None:
        self.runner.shutdown()
        for bp in self.brokers:
            bp.stop()
        self.brokers.clear()
        if not self.cfg.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the load generator's own ceiling -----------------------------------------------------
    def generator_check(self, creds: list[Cred]) -> None:
        """Publish into Mosquitto with nobody subscribed: what the generator can push at most."""
        if mosquitto_path() is None:
            self.step()
            self.step()
            return
        with self.broker_side():
            bp = start_mosquitto(self.workdir / "gen", self.cfg.mosquitto_inflight)
        self.brokers.append(bp)
        try:
            for qos in (0, 1):
                self.generator[f"q{qos}"] = self.runner.phase(
                    bp,
                    f"generator QoS {qos} → mosquitto (no subscriber)",
                    creds,
                    "sat",
                    qos,
                    self.cfg.duration,
                    self.cfg.warmup,
                    subscriber=False,
                )
                self.step()
        finally:
            bp.stop()
            self.brokers.remove(bp)

    # -- --pin ---------------------------------------------------------------------------------
    def broker_side(self) -> contextlib.AbstractContextManager[None]:
        """Around every broker start: with --pin the broker is born on the broker CPUs."""
        return self.cfg.pin.broker_side() if self.cfg.pin is not None else contextlib.nullcontext()

    def check_pin(self, report: BrokerReport, bp: BrokerProc) -> None:
        if self.cfg.pin is not None and (strays := self.cfg.pin.strays(bp.pid)):
            report.notes.append(f"--pin: {strays} broker threads may run outside CPU set {sorted(self.cfg.pin.broker)}")

    # -- one broker ---------------------------------------------------------------------------
    def start_broker(self, key: str) -> tuple[BrokerProc, list[Cred], list[Cred], list[Cred]]:
        """The broker, and the creds of the publishers, the idle devices and the storm devices."""
        cfg = self.cfg
        bdir = self.workdir / BROKERS[key]
        bdir.mkdir(parents=True, exist_ok=True)
        pub_serials = serials(cfg.devices, "bench")
        idle_serials = serials(cfg.idle_devices, "idle")
        storm_serials = serials(cfg.storm, "storm")
        if key == "a":
            bp = start_amqtt(bdir, cfg.amqtt_uvloop)
        elif key == "c":
            bp = start_mosquitto(bdir, cfg.mosquitto_inflight)
        else:
            reason = nxg_available()
            if reason:
                raise BrokerUnavailable(reason)
            total = cfg.devices + cfg.idle_devices + cfg.storm
            self.tick(f"NXG: provisioning {total} devices")
            creds = provision(
                bdir / "data",
                pub_serials + idle_serials + storm_serials,
                on_progress=lambda n: self.tick(f"NXG: provisioned {n}/{total} devices"),
            )
            self.tick("NXG: starting broker")
            n_pub, n_idle = cfg.devices, cfg.idle_devices
            start = start_nxg_mosquitto if key == "d" else start_nxg
            with loop_monitor(bdir / LOOP_LOG if cfg.loop_stalls else None):
                bp = start(bdir / "data", bdir, creds[: n_pub + n_idle], new_secret())
            self.brokers.append(bp)
            return bp, creds[:n_pub], creds[n_pub : n_pub + n_idle], creds[n_pub + n_idle :]
        self.brokers.append(bp)
        anon = [[Cred(s) for s in group] for group in (pub_serials, idle_serials, storm_serials)]
        return bp, anon[0], anon[1], anon[2]

    def bench_broker(self, key: str) -> BrokerReport:
        """Per idle count: a fresh broker, RSS baseline, idle devices, the three load phases."""
        report = BrokerReport(key, BROKERS[key])
        for idle in self.cfg.idle_counts:
            if not report.available:
                self.progress.advance(self.task, self.steps_per_idle(idle))
                continue
            self.bench_broker_idle(report, idle)
        return report

    def steps_per_idle(self, idle: int) -> int:
        return 1 + len(self.cfg.kinds) + (1 if idle else 0) + (1 if self.storm_here(idle) else 0)

    def storm_here(self, idle: int) -> bool:
        """The CONNECT storm runs once per broker, on the broker without idle devices."""
        return self.cfg.storm > 0 and idle == 0

    def storm_job(self, key: str, bp: BrokerProc, creds: list[Cred]) -> StormJob:
        """(b): a share of the attempts fail — half a wrong token for a real device, half a wrong
        connection code — from their own source address; (a)/(c): all anonymous."""
        cfg = self.cfg
        if key not in ("b", "d"):
            return StormJob(bp.host, bp.port, creds, concurrency=cfg.storm_concurrency)
        n_bad = min(len(creds), round(cfg.storm * max(0.0, min(1.0, cfg.storm_bad))))
        good, rest = creds[: len(creds) - n_bad], creds[len(creds) - n_bad :]
        bad: list[Cred] = []
        for i, cred in enumerate(rest):
            if cfg.storm_bad_kind == "unknown":
                # a flood of logins nothing answers ahead of time: each one asks the core
                bad.append(Cred(f"storm-x-{i:05d}", f"nobody-{i:05d}", f"wrong-{i:05d}-" + "x" * 20))
            elif i % 2 == 0:
                bad.append(Cred(cred.serial, cred.serial, "wrong-token-" + "x" * 20))
            else:
                bad.append(Cred(f"storm-pair-{i:05d}", "pair", "ZZZZ-ZZZZ"))
        return StormJob(
            bp.host, bp.port, good, bad, bad_addr=cfg.storm_bad_addr or None, concurrency=cfg.storm_concurrency
        )

    def bench_broker_idle(self, report: BrokerReport, idle: int) -> None:
        cfg = self.cfg
        key = report.key
        title = TITLES[key]
        total = self.steps_per_idle(idle)
        steps_done = 0
        try:
            with self.broker_side():
                bp, pub_creds, idle_creds, storm_creds = self.start_broker(key)
            self.check_pin(report, bp)
        except BrokerUnavailable as exc:
            report.available, report.reason = False, str(exc)
            self.progress.advance(self.task, total)
            return
        except RuntimeError as exc:
            report.available, report.reason = False, f"failed to start: {exc}"
            self.progress.advance(self.task, total)
            return
        self.step()
        steps_done += 1
        store = Store(bp.db_path) if bp.db_path is not None else None
        try:
            self.runner.settle(bp, f"{title}: starting", max_s=5.0)
            report.rss_start[idle] = bp.rss()
            session: IdleSession | None = None
            if idle:
                session = self.runner.connect_idle(bp, idle_creds[:idle], title)
                report.idle = session
                self.step()
                steps_done += 1
            for kind in cfg.kinds:
                if not bp.alive():
                    raise RuntimeError(f"broker died: {bp.log_tail(3)}")
                label = f"{title} · {idle:,} idle · {kind}"
                if kind == "paced":
                    res = self.runner.phase(
                        bp,
                        label,
                        pub_creds,
                        "paced",
                        cfg.paced_qos,
                        cfg.duration,
                        cfg.warmup,
                        rate=cfg.paced_rate_idle if idle else cfg.paced_rate,
                        grace=cfg.grace,
                        store=store,
                    )
                else:
                    res = self.runner.phase(
                        bp,
                        label,
                        pub_creds,
                        "sat",
                        int(kind[1]),
                        cfg.duration,
                        cfg.warmup,
                        grace=cfg.grace,
                        store=store,
                    )
                report.phases[f"{idle}:{kind}"] = res
                report.rss_peak[idle] = max(report.rss_peak.get(idle, 0), res.rss_peak)
                self.step()
                steps_done += 1
                if kind != cfg.kinds[-1] or self.storm_here(idle):
                    self.runner.settle(bp, label)
            if self.storm_here(idle):
                if not bp.alive():
                    raise RuntimeError(f"broker died: {bp.log_tail(3)}")
                report.storm = self.runner.storm_phase(
                    bp,
                    f"{title} · CONNECT storm of {cfg.storm:,}",
                    pub_creds,
                    self.storm_job(key, bp, storm_creds),
                    cfg.paced_qos,
                    cfg.storm_rate,
                    quiet=cfg.duration,
                    budget=cfg.storm_budget,
                    warmup=cfg.warmup,
                    grace=cfg.grace,
                    store=store,
                )
                report.rss_peak[idle] = max(report.rss_peak.get(idle, 0), report.storm.rss_peak)
                self.step()
                steps_done += 1
            if session is not None:
                report.idle_lost = self.runner.release_idle(session, title)
                if report.idle_lost:
                    report.notes.append(f"{report.idle_lost} idle devices were disconnected by the broker")
                if session.failed:
                    report.notes.append(f"{session.failed} idle devices failed to connect")
        except RuntimeError as exc:
            report.notes.append(f"{idle} idle: {exc}")
        finally:
            self.tick(f"{title}: stopping broker")
            bp.stop()
            if bp in self.brokers:
                self.brokers.remove(bp)
            self.progress.advance(self.task, max(0, total - steps_done))
        if self.cfg.loop_stalls and report.storm is not None and (bp.log_path.parent / LOOP_LOG).exists():
            report.loop_stalls = loop_stalls(bp.log_path.parent / LOOP_LOG, report.storm)
        if bp.killed:
            report.notes.append(f"{idle} idle: broker did not stop within 15 s of SIGTERM/SIGINT (killed)")
        elif bp.proc.returncode not in (0, -signal.SIGTERM, -signal.SIGINT, None):
            report.notes.append(f"{idle} idle: broker exit code {bp.proc.returncode}")

    def run(self) -> tuple[dict[str, PhaseResult], list[BrokerReport]]:
        if self.cfg.gen_check:
            creds = [Cred(s) for s in serials(self.cfg.devices, "gen")]
            self.generator_check(creds)
        reports = [self.bench_broker(key) for key in self.cfg.only]
        self.tick("done")
        return self.generator, reports


# --------------------------------------------------------------------------------------------
# the table


def fmt_rate(v: float) -> str:
    if v is None or math.isnan(v):
        return "–"
    return f"{v:,.0f}"


def fmt_ms(v: float) -> str:
    if v is None or math.isnan(v):
        return "–"
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def fmt_ratio(x: float, y: float) -> str:
    if math.isnan(x) or math.isnan(y) or y == 0:
        return "–"
    return f"{x / y:.2f}"


def verdict(ok: bool | None) -> Text:
    if ok is None:
        return Text("n/a", style="dim")
    return Text("PASS", style="bold green") if ok else Text("FAIL", style="bold red")


def join_text(parts: list[Text]) -> Text:
    out = Text()
    for i, part in enumerate(parts):
        if i:
            out.append(" · ")
        out.append_text(part)
    return out


def check(value: float, ok: Callable[[float], bool]) -> bool | None:
    if value is None or math.isnan(value):
        return None
    return ok(value)


@dataclass
class Row:
    label: str
    values: Callable[[BrokerReport, int], str]
    raw: Callable[[BrokerReport, int], float] | None = None
    gen: str = ""
    ratio: bool = False
    target: str = ""
    verdicts: Callable[[dict[str, BrokerReport], Config], list[bool | None]] | None = None
    only_idle: bool = False  # value only meaningful with idle devices connected
    only_zero: bool = False  # value only measured on the broker without idle devices (the storm)
    section_end: bool = False


def phase_val(kind: str, attr: str) -> Callable[[BrokerReport, int], float]:
    def get(rep: BrokerReport, idle: int) -> float:
        ph = rep.get(idle, kind)
        if ph is None:
            return math.nan
        value: float = getattr(ph, attr)
        return value

    return get


def build_table(cfg: Config, generator: dict[str, PhaseResult], reports: list[BrokerReport], elapsed: float) -> Table:
    by_key = {r.key: r for r in reports}
    idle_n = cfg.idle_devices
    hi = idle_n if idle_n else 0

    def b(idle: int, kind: str, attr: str) -> float:
        rep = by_key.get("b")
        return phase_val(kind, attr)(rep, idle) if rep and rep.available else math.nan

    def a(idle: int, kind: str, attr: str) -> float:
        rep = by_key.get("a")
        return phase_val(kind, attr)(rep, idle) if rep and rep.available else math.nan

    def gen_cell(kind: str) -> str:
        g = generator.get(kind)
        return fmt_rate(g.accepted) if g else ""

    def acc_vs_a(kind: str) -> Callable[[dict[str, BrokerReport], Config], list[bool | None]]:
        def v(_r: dict[str, BrokerReport], _c: Config) -> list[bool | None]:
            base = a(0, kind, "accepted")
            return [check(b(0, kind, "accepted"), lambda x: x >= 0.8 * base) if not math.isnan(base) else None]

        return v

    def delivered(kind: str) -> Callable[[dict[str, BrokerReport], Config], list[bool | None]]:
        def v(_r: dict[str, BrokerReport], _c: Config) -> list[bool | None]:
            acc = b(0, kind, "accepted")
            out = [check(b(0, kind, "delivered"), lambda x: x >= 0.8 * acc)]
            if idle_n:
                out.append(check(b(hi, kind, "delivered"), lambda x: x >= 3000))
            return out

        return v

    def kb_idle(rep: BrokerReport, idle: int) -> float:
        return rep.idle.kb_per_device if idle and rep.idle is not None else math.nan

    def connect_rate(rep: BrokerReport, idle: int) -> float:
        return rep.idle.rate if idle and rep.idle is not None else math.nan

    def rss_mb(rep: BrokerReport, idle: int) -> float:
        if idle:
            return rep.idle.rss_after / 2**20 if rep.idle is not None else math.nan
        return rep.rss_start[idle] / 2**20 if idle in rep.rss_start else math.nan

    def rss_peak_mb(rep: BrokerReport, idle: int) -> float:
        return rep.rss_peak[idle] / 2**20 if idle in rep.rss_peak else math.nan

    def rate(kind: str, attr: str) -> Callable[[BrokerReport, int], str]:
        return lambda rep, idle: fmt_rate(phase_val(kind, attr)(rep, idle))

    def ms(kind: str, attr: str) -> Callable[[BrokerReport, int], str]:
        return lambda rep, idle: fmt_ms(phase_val(kind, attr)(rep, idle))

    def cpu_split(kind: str) -> Callable[[BrokerReport, int], str]:
        def f(rep: BrokerReport, idle: int) -> str:
            ph = rep.get(idle, kind)
            if ph is None or len(ph.cpu_procs) < 2:
                return "–"
            return " · ".join(f"{name} {v:.0f}%" for name, v in sorted(ph.cpu_procs.items(), key=lambda kv: -kv[1]))

        return f

    def pct(kind: str, attr: str, scale: float = 1.0) -> Callable[[BrokerReport, int], str]:
        def f(rep: BrokerReport, idle: int) -> str:
            v = phase_val(kind, attr)(rep, idle) * scale
            return "–" if math.isnan(v) else f"{v:.0f}%"

        return f

    def backlog(kind: str) -> Callable[[BrokerReport, int], str]:
        def f(rep: BrokerReport, idle: int) -> str:
            ph = rep.get(idle, kind)
            return f"{ph.backlog:,}" if ph is not None and not math.isnan(ph.delivered) else "–"

        return f

    def stored_backlog(kind: str) -> Callable[[BrokerReport, int], str]:
        def f(rep: BrokerReport, idle: int) -> str:
            ph = rep.get(idle, kind)
            return f"{ph.stored_backlog:,}" if ph is not None and not math.isnan(ph.stored) else "–"

        return f

    def paced_rate_label(rep: BrokerReport, idle: int) -> str:
        ph = rep.get(idle, "paced")
        return f"{ph.rate:,.0f}/s QoS {ph.qos}" if ph is not None else "–"

    def storm_cell(fn: Callable[[StormPhaseResult], str]) -> Callable[[BrokerReport, int], str]:
        return lambda rep, _idle: fn(rep.storm) if rep.storm is not None else "–"

    def storm_ratio(rep: BrokerReport | None) -> float:
        return rep.storm.p99_ratio if rep is not None and rep.available and rep.storm is not None else math.nan

    def storm_load(st: StormPhaseResult) -> str:
        bad = f" ({st.storm_bad:,} bad)" if st.storm_bad else ""
        return f"{st.storm_n:,}{bad} · {st.rate:,.0f}/s"

    def storm_outcome(st: StormPhaseResult) -> str:
        c = st.conn
        refused = sum(c.refused.values())
        tail = f" / {c.unfinished} unfin." if c.unfinished else ""
        return f"{c.accepted:,} / {refused:,} / {c.failed + c.sub_refused + c.bad_accepted:,}{tail}"

    def storm_codes(st: StormPhaseResult) -> str:
        return " · ".join(f"{k}: {v}" for k, v in sorted(st.conn.refused.items())) or "–"

    def pair_ms(a: float, b: float, sep: str = " / ") -> str:
        return f"{fmt_ms(a)}{sep}{fmt_ms(b)}"

    def storm_window(st: StormPhaseResult) -> str:
        return f"{st.connect_rate:,.0f}/s · {st.storm_seconds:.2f} s" if not math.isnan(st.connect_rate) else "–"

    def lat_count(rep: BrokerReport, idle: int) -> str:
        ph = rep.get(idle, "paced")
        if ph is None:
            return "–"
        return f"{ph.lat_n:,}/{ph.sent_window:,}"

    rows = [
        Row(
            "QoS 0 accepted msg/s",
            rate("q0", "accepted"),
            phase_val("q0", "accepted"),
            gen=gen_cell("q0"),
            ratio=True,
            target="b ≥ 0.8×a (0 idle)",
            verdicts=acc_vs_a("q0"),
        ),
        Row(
            "QoS 0 delivered msg/s",
            rate("q0", "delivered"),
            phase_val("q0", "delivered"),
            ratio=True,
            target="b ≥ 0.8×b acc (0) · ≥ 3,000 (N)",
            verdicts=delivered("q0"),
        ),
        Row("QoS 0 backlog msgs (≤3 s after stop)", backlog("q0")),
        Row("QoS 0 stored msg/s", rate("q0", "stored")),
        Row("QoS 0 broker CPU (% of a core)", pct("q0", "broker_cpu")),
        Row("QoS 0 CPU by process", cpu_split("q0"), section_end=True),
        Row(
            "QoS 1 accepted msg/s (PUBACKs)",
            rate("q1", "accepted"),
            phase_val("q1", "accepted"),
            gen=gen_cell("q1"),
            ratio=True,
            target="b ≥ 0.8×a (0 idle)",
            verdicts=acc_vs_a("q1"),
        ),
        Row(
            "QoS 1 delivered msg/s",
            rate("q1", "delivered"),
            phase_val("q1", "delivered"),
            ratio=True,
            target="b ≥ 0.8×b acc (0) · ≥ 3,000 (N)",
            verdicts=delivered("q1"),
        ),
        Row("QoS 1 backlog msgs (≤3 s after stop)", backlog("q1")),
        Row(
            "QoS 1 stored msg/s",
            rate("q1", "stored"),
            target="b ≥ 5,000 (0 idle)",
            verdicts=lambda _r, _c: [check(b(0, "q1", "stored"), lambda x: x >= 5000)],
        ),
        Row("QoS 1 stored after stop (rows)", stored_backlog("q1")),
        Row("QoS 1 PUBLISH→PUBACK p50 ms", ms("q1", "ack_p50")),
        Row("QoS 1 PUBLISH→PUBACK p99 ms", ms("q1", "ack_p99")),
        Row("QoS 1 broker CPU (% of a core)", pct("q1", "broker_cpu")),
        Row("QoS 1 CPU by process", cpu_split("q1"), section_end=True),
        Row("paced rate", paced_rate_label),
        Row("paced publish→delivered p50 ms", ms("paced", "lat_p50")),
        Row(
            "paced publish→delivered p99 ms",
            ms("paced", "lat_p99"),
            target="b ≤ 100 ms (N, 1,000/s)",
            verdicts=lambda _r, _c: [check(b(hi, "paced", "lat_p99"), lambda x: x <= 100)] if idle_n else [],
        ),
        Row("paced delivered / sent", lat_count),
        Row("paced PUBLISH→PUBACK p50 ms (QoS 1)", ms("paced", "ack_p50")),
        Row("paced PUBLISH→PUBACK p99 ms (QoS 1)", ms("paced", "ack_p99")),
        Row("paced publish→stored p50 ms", ms("paced", "store_p50")),
        Row(
            "paced publish→stored p99 ms",
            ms("paced", "store_p99"),
            target="b ≤ 250 ms (0 idle)",
            verdicts=lambda _r, _c: [check(b(0, "paced", "store_p99"), lambda x: x <= 250)],
            section_end=True,
        ),
        Row("storm CONNECTs (bad) · telemetry msg/s", storm_cell(storm_load), only_zero=True),
        Row("storm CONNECTs/s · storm duration", storm_cell(storm_window), only_zero=True),
        Row("storm accepted / refused / failed", storm_cell(storm_outcome), only_zero=True),
        Row("storm refused by CONNACK rc (3 lockout)", storm_cell(storm_codes), only_zero=True),
        Row(
            "storm CONNECT→CONNACK p50 / p99 ms",
            storm_cell(lambda st: pair_ms(percentile(st.conn.connack_ms, 50), percentile(st.conn.connack_ms, 99))),
            only_zero=True,
        ),
        Row(
            "quiet publish→delivered p50 / p99 ms",
            storm_cell(lambda st: pair_ms(st.quiet.p50, st.quiet.p99)),
            only_zero=True,
        ),
        Row(
            "storm publish→delivered p50 / p99 ms",
            storm_cell(lambda st: pair_ms(st.storm.p50, st.storm.p99)),
            only_zero=True,
        ),
        Row(
            "storm p99 ÷ quiet p99 (delivered)",
            storm_cell(lambda st: "–" if math.isnan(st.p99_ratio) else f"{st.p99_ratio:.2f}×"),
            target="b ≤ 3×",
            verdicts=lambda rr, _c: [check(storm_ratio(rr.get("b")), lambda x: x <= 3.0)],
            only_zero=True,
        ),
        Row(
            "storm delivered / sent (quiet · storm)",
            storm_cell(lambda st: f"{st.quiet.n}/{st.quiet.sent:.0f} · {st.storm.n}/{st.storm.sent:.0f}"),
            only_zero=True,
        ),
        Row(
            "publish→stored p99 ms quiet → storm",
            storm_cell(lambda st: pair_ms(st.quiet_store.p99, st.storm_store.p99, " → ")),
            only_zero=True,
        ),
        Row(
            "broker CPU quiet → storm",
            storm_cell(lambda st: "–" if math.isnan(st.cpu_storm) else f"{st.cpu_quiet:.0f}% → {st.cpu_storm:.0f}%"),
            only_zero=True,
            section_end=True,
        ),
        Row("idle CONNECT+SUBSCRIBE /s", lambda r, i: fmt_rate(connect_rate(r, i)), only_idle=True),
        Row(
            "RSS per idle device KB",
            lambda r, i: fmt_ms(kb_idle(r, i)),
            target="b ≤ 30 KB",
            verdicts=lambda rr, _c: [check(kb_idle(rr["b"], hi), lambda x: x <= 30)] if "b" in rr else [],
            only_idle=True,
        ),
        Row("broker RSS MB (before load, with idle)", lambda r, i: fmt_ms(rss_mb(r, i))),
        Row("broker RSS MB (peak under load)", lambda r, i: fmt_ms(rss_peak_mb(r, i))),
    ]

    keys = [k for k in cfg.only]
    idles = cfg.idle_counts
    table = Table(
        title=f"NXG MQTT broker benchmark — {cfg.devices} publishing devices, "
        f"{cfg.duration:g} s windows, {cfg.publishers} publisher processes",
        caption=caption(cfg, generator, reports, elapsed),
        caption_justify="left",
        show_lines=False,
        header_style="bold",
    )
    table.add_column("metric", no_wrap=True)
    if generator:
        table.add_column("gen max", justify="right")
    for k in keys:
        for idle in idles:
            table.add_column(f"{TITLES[k]}\n{idle:,} idle", justify="right")
    have_bc = "b" in keys and "c" in keys
    if have_bc:
        table.add_column("b/c\n" + " · ".join(f"{i:,}" for i in idles), justify="right")
    table.add_column("target (b)")
    table.add_column("pass")
    for row in rows:
        cells: list[str | Text] = [row.label]
        if generator:
            cells.append(row.gen)
        for k in keys:
            rep = by_key.get(k)
            for idle in idles:
                if rep is None or not rep.available:
                    cells.append(Text("n/a", style="dim"))
                elif (row.only_idle and not idle) or (row.only_zero and idle):
                    cells.append("")
                else:
                    cells.append(row.values(rep, idle))
        if have_bc:
            if row.ratio and row.raw is not None and by_key["b"].available and by_key["c"].available:
                cells.append(" · ".join(fmt_ratio(row.raw(by_key["b"], i), row.raw(by_key["c"], i)) for i in idles))
            else:
                cells.append("")
        cells.append(row.target)
        cells.append(join_text([verdict(v) for v in row.verdicts(by_key, cfg)]) if row.verdicts else "")
        table.add_row(*cells, end_section=row.section_end)
    return table


def storm_notes(cfg: Config, key: str, st: StormPhaseResult) -> list[str]:
    title = TITLES[key]
    c = st.conn
    out = [
        f"{title} storm: quiet window {st.quiet.seconds:.1f} s ({st.quiet.n:,} msgs), storm window "
        f"{st.storm.seconds:.2f} s ({st.storm.n:,} msgs, from the first CONNECT to the last finished one, ≥ 1 s); "
        f"{c.attempts:,}/{st.storm_n:,} attempts finished in {st.storm_seconds:.2f} s, "
        f"{c.lost} accepted storm clients dropped before the end"
    ]
    if st.storm_bad:
        lock = c.refused.get(3, 0)
        where = f"from {c.bad_addr}" if c.bad_addr else "from 127.0.0.1 (same as the good ones)"
        out.append(
            f"{title} storm: {st.storm_bad} bad CONNECTs {where}; the pairing lockout "
            f"(10 wrong codes/min per address, then 5 min) refused {lock} of them with CONNACK 3"
            + (f"; {c.bad_accepted} bad CONNECTs were ACCEPTED" if c.bad_accepted else "")
        )
    for err in st.errors:
        out.append(f"{title} storm: {err.splitlines()[0]}")
    return out


LOOP_LOG = "loop-stalls.log"
LOOPMON_DIR = Path(__file__).resolve().parent / "loopmon"


@contextmanager
def loop_monitor(log: Path | None) -> Iterator[None]:
    """While starting the NXG broker: bench/loopmon on its PYTHONPATH, writing to `log`."""
    if log is None:
        yield
        return
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "NXG_BENCH_LOOP_LOG")}
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(LOOPMON_DIR), saved["PYTHONPATH"]) if p)
    os.environ["NXG_BENCH_LOOP_LOG"] = str(log)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class LoopWindow:
    """bench/loopmon's records inside one storm-phase window (quiet, storm)."""

    late: int = 0  # late 1 ms ticks
    wall_max: float = 0.0  # longest late tick, wall ms
    cpu_max: float = 0.0  # longest late tick, loop-thread CPU ms
    cpu_p99: float = 0.0  # 99th percentile of CPU ms over the window's 1 ms ticks (on time: 0)
    runq_max: float = 0.0  # longest run-queue wait (OS scheduling) within one late tick, ms
    gil_max: float = 0.0  # longest wall − CPU − run-queue of a late tick: GIL (or poll) wait, ms
    gil_ms: float = 0.0  # the same summed over the window's late ticks
    gil_max_steal: float = 0.0  # the VM's steal time (all CPUs) during that longest tick, ms (10 ms steps)
    gil_max_other: float = 0.0  # the process's other threads' CPU around that tick, ms
    cpu_ms: float = 0.0  # loop-thread CPU over the window, ms
    other_ms: float = 0.0  # the other threads' CPU over the window, ms (each of their runs holds the GIL)
    seconds: float = 0.0
    gcs: dict[int, int] = field(default_factory=dict)  # generation → collections in the window
    gc_ms_max: float = 0.0
    gc_ms_sum: float = 0.0


@dataclass
class LoopStats:
    quiet: LoopWindow
    storm: LoopWindow
    cpu_per_connect_us: float  # storm window's loop CPU less the quiet rate, per finished attempt
    gc_conf: str  # thresholds and frozen objects once the broker ran (tune_gc's work)


def _cpu_at(samples: list[tuple[float, float, float]], t: float) -> tuple[float, float]:
    """(loop thread, other threads) CPU s at wall time `t`: the last 10 ms sample at or before it."""
    before = [(cpu, other) for ts, cpu, other in samples if ts <= t]
    return before[-1] if before else (samples[0][1:] if samples else (0.0, 0.0))


def loop_stalls(log: Path, st: StormPhaseResult) -> LoopStats:
    """Per storm-phase window: late ticks, their longest wall/CPU/run-queue/GIL ms, the p99 of CPU
    ms over the window's 1 ms ticks, the loop's CPU, and the garbage collections."""
    ticks: list[tuple[float, float, float, float, float]] = []
    samples: list[tuple[float, float, float]] = []
    gcs: list[tuple[float, int, float]] = []
    gc_conf = "not recorded"
    for line in log.read_text().splitlines():
        kind, *f = line.split()
        if kind == "tick":
            steal = float(f[4]) if len(f) > 4 else math.nan  # older logs have no steal column
            ticks.append((float(f[0]), float(f[1]), float(f[2]), float(f[3]), steal))
        elif kind == "cpu":
            samples.append((float(f[0]), float(f[1]), float(f[2])))
        elif kind == "gc":
            gcs.append((float(f[0]), int(f[1]), float(f[2])))
        elif kind == "gcconf":
            gc_conf = f"thresholds {f[0]}/{f[1]}/{f[2]}, {int(f[3]):,} frozen"
    out: dict[str, LoopWindow] = {}
    for name, lat in (("quiet", st.quiet), ("storm", st.storm)):
        inside = [x for x in ticks if lat.t0 <= x[0] < lat.t1]
        cpus = sorted(cpu for _, _, cpu, _, _ in inside)
        expected = max(len(cpus), int((lat.t1 - lat.t0) * 1000))
        rank = expected - math.ceil(0.99 * expected)  # ticks above the 99th percentile
        window_gcs = [(gen, ms) for t, gen, ms in gcs if lat.t0 <= t < lat.t1]
        w = LoopWindow(len(inside), seconds=lat.t1 - lat.t0)
        w.wall_max = max((wall for _, wall, _, _, _ in inside), default=0.0)
        w.cpu_max = max(cpus, default=0.0)
        w.cpu_p99 = cpus[-rank - 1] if len(cpus) > rank else 0.0
        w.runq_max = max((runq for _, _, _, runq, _ in inside), default=0.0)
        w.gil_ms = sum(max(0.0, wall - cpu - runq) for _, wall, cpu, runq, _ in inside)
        if inside:
            # the longest tick in which the loop neither ran nor waited for a CPU: was the GIL
            # busy in another thread of ours (their CPU), or was the VM not running (steal)?
            t, wall, cpu, runq, steal = max(inside, key=lambda x: x[1] - x[2] - x[3])
            w.gil_max, w.gil_max_steal = wall - cpu - runq, steal
            before, after = _cpu_at(samples, t - wall / 1000 - 0.01), _cpu_at(samples, t + 0.01)
            w.gil_max_other = 1000.0 * (after[1] - before[1])
        (cpu0, other0), (cpu1, other1) = _cpu_at(samples, lat.t0), _cpu_at(samples, lat.t1)
        w.cpu_ms, w.other_ms = 1000.0 * (cpu1 - cpu0), 1000.0 * (other1 - other0)
        for gen, ms in window_gcs:
            w.gcs[gen] = w.gcs.get(gen, 0) + 1
            w.gc_ms_max = max(w.gc_ms_max, ms)
            w.gc_ms_sum += ms
        out[name] = w
    q, s = out["quiet"], out["storm"]
    extra_ms = s.cpu_ms - (q.cpu_ms / q.seconds * s.seconds if q.seconds > 0 else 0.0)
    attempts = st.conn.attempts
    per_connect = 1000.0 * extra_ms / attempts if attempts else math.nan
    return LoopStats(q, s, per_connect, gc_conf)


def loop_lines(title: str, ls: LoopStats) -> list[str]:
    q, s = ls.quiet, ls.storm

    def gcs(w: LoopWindow) -> str:
        if not w.gcs:
            return "none"
        counts = ", ".join(f"{n}× gen {gen}" for gen, n in sorted(w.gcs.items()))
        return f"{counts} (longest {w.gc_ms_max:.1f} ms, {w.gc_ms_sum:.1f} ms in all)"

    def pct(ms: float, w: LoopWindow) -> str:
        return f"{ms / w.seconds / 10 if w.seconds else 0:.0f}%"

    return [
        f"{title} loop stalls (1 ms timer, quiet → storm): late ticks {q.late} → {s.late}, "
        f"longest {q.wall_max:.1f} → {s.wall_max:.1f} ms wall, {q.cpu_max:.1f} → {s.cpu_max:.1f} ms loop-thread CPU "
        f"(p99 {q.cpu_p99:.1f} → {s.cpu_p99:.1f} ms), {q.runq_max:.1f} → {s.runq_max:.1f} ms run-queue wait, "
        f"{q.gil_max:.1f} → {s.gil_max:.1f} ms neither (GIL wait; {pct(q.gil_ms, q)} → {pct(s.gil_ms, s)} of the time)",
        f"{title} longest 'neither' tick, quiet → storm: the process's other threads used {q.gil_max_other:.1f} → "
        f"{s.gil_max_other:.1f} ms CPU around it (GIL held by our own threads), the VM lost {q.gil_max_steal:.0f} → "
        f"{s.gil_max_steal:.0f} ms to steal in it (the host not running our CPUs; all CPUs, 10 ms steps)",
        f"{title} loop CPU: {pct(q.cpu_ms, q)} → {pct(s.cpu_ms, s)} of a core, other threads "
        f"{pct(q.other_ms, q)} → {pct(s.other_ms, s)}; "
        f"{ls.cpu_per_connect_us:.0f} µs per storm CONNECT (storm window less the quiet rate)",
        f"{title} garbage collections: quiet {gcs(q)}; storm {gcs(s)}; collector {ls.gc_conf}",
    ]


def caption(cfg: Config, generator: dict[str, PhaseResult], reports: list[BrokerReport], elapsed: float) -> str:
    lines = []
    for rep in reports:
        if not rep.available:
            lines.append(f"{TITLES[rep.key]}: not available — {rep.reason.splitlines()[0] if rep.reason else ''}")
        if rep.idle is not None and rep.idle.count:
            s = rep.idle
            lines.append(
                f"{TITLES[rep.key]}: {s.connected:,}/{s.count:,} idle devices connected+subscribed in "
                f"{s.seconds:.1f} s, then the broker was busy {s.settle_s:.1f} s more ({s.settle_cpu:.1f} s CPU) "
                f"before the first window; RSS {s.rss_before / 2**20:.0f} → {s.rss_after / 2**20:.0f} MB"
                + (f"; {s.failed} failed" if s.failed else "")
            )
        for note in rep.notes:
            lines.append(f"{TITLES[rep.key]}: {note.splitlines()[0]}")
        for key, ph in rep.phases.items():
            for err in ph.errors:
                lines.append(f"{TITLES[rep.key]} {key}: {err.splitlines()[0]}")
        if rep.storm is not None:
            lines.extend(storm_notes(cfg, rep.key, rep.storm))
        if rep.loop_stalls is not None:
            lines.extend(loop_lines(TITLES[rep.key], rep.loop_stalls))
    gen_bound = []
    for kind in ("q0", "q1"):
        g = generator.get(kind)
        if g is None or math.isnan(g.accepted):
            continue
        for rep in reports:
            for idle in cfg.idle_counts:
                res = rep.get(idle, kind)
                if res is not None and res.accepted >= 0.7 * g.accepted:
                    gen_bound.append(f"{TITLES[rep.key]} {kind} {idle} idle")
    if gen_bound:
        lines.append(
            "NOTE: ≥ 70% of the generator's ceiling, may be generator-bound (a lower bound): " + ", ".join(gen_bound)
        )
    elif generator:
        lines.append("Generator ceiling (gen max: Mosquitto, no subscriber) is above every broker's accepted rate.")
    pinning = (
        f"pinned (--pin): {cfg.pin.describe()}"
        if cfg.pin is not None
        else "not pinned: broker and bench processes share every CPU"
    )
    lines.append(
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; publishers, subscriber and idle devices "
        f"run in separate processes on the same machine, {pinning}; warm-up {cfg.warmup:g} s, grace {cfg.grace:g} s; "
        f"QoS 1 in-flight {cfg.inflight}/device; QoS 0 window {cfg.q0_window}×{cfg.q0_batch} msgs/device "
        f"(PINGREQ after each batch); total {elapsed:.0f} s."
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# CLI


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(
        prog="python -m bench.broker_bench", description="Benchmark amqtt (a), NXG (b) and Mosquitto (c)."
    )
    p.add_argument("--devices", type=int, default=None, help="publishing devices (default 200)")
    p.add_argument("--idle-devices", type=int, default=None, help="idle subscribed devices (default 5000)")
    p.add_argument("--duration", type=float, default=None, help="measurement window, s (default 5)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up before each window, s (default 1)")
    p.add_argument("--grace", type=float, default=GRACE_S, help="backlog grace after the window, s")
    p.add_argument("--quick", action="store_true", help="short windows and 1,000 idle devices")
    p.add_argument("--only", default="a,b,c", help="brokers to run: letters or names, e.g. a,c or nxg")
    p.add_argument("--json", type=Path, default=None, help="also write all raw results here")
    p.add_argument("--publishers", type=int, default=2, help="publisher processes (default 2)")
    p.add_argument("--idle-procs", type=int, default=2, help="processes holding the idle devices")
    p.add_argument("--inflight", type=int, default=16, help="QoS 1 unacknowledged messages per device")
    p.add_argument("--q0-batch", type=int, default=16, help="QoS 0: messages per write, then a PINGREQ")
    p.add_argument("--q0-window", type=int, default=4, help="QoS 0: unanswered PINGREQ batches per device")
    p.add_argument("--paced-rate", type=float, default=2000.0, help="paced msg/s with 0 idle devices")
    p.add_argument("--paced-rate-idle", type=float, default=1000.0, help="paced msg/s with idle devices")
    p.add_argument("--paced-qos", type=int, choices=(0, 1), default=1, help="QoS of the paced runs")
    p.add_argument("--no-gen-check", action="store_true", help="skip measuring the generator ceiling")
    p.add_argument("--amqtt-asyncio", action="store_true", help="run plain amqtt on asyncio, not uvloop")
    p.add_argument("--mosquitto-inflight", type=int, default=1000, help="mosquitto max_inflight_messages")
    p.add_argument("--keep", action="store_true", help="keep the work dir (broker logs, NXG data)")
    p.add_argument("--storm", type=int, default=500, help="CONNECT storm: new connections (default 500, 0 = skip)")
    p.add_argument("--storm-rate", type=float, default=1000.0, help="paced telemetry msg/s during the storm phase")
    p.add_argument("--storm-bad", type=float, default=0.2, help="(b): share of storm CONNECTs that must fail")
    p.add_argument("--storm-budget", type=float, default=8.0, help="s the storm may take while telemetry runs")
    p.add_argument("--storm-concurrency", type=int, default=100, help="storm CONNECTs in flight at once")
    p.add_argument(
        "--storm-bad-addr", default="127.0.0.2", help="source address of the failing CONNECTs ('' = 127.0.0.1)"
    )
    p.add_argument(
        "--storm-bad-kind",
        choices=("mixed", "unknown"),
        default="mixed",
        help="(b)/(d): mixed = wrong tokens and wrong pairing codes; unknown = unknown user names (each asks the core)",
    )
    p.add_argument("--storm-only", action="store_true", help="only the CONNECT storm phase (no saturation, no idle)")
    p.add_argument(
        "--loop-stalls",
        action="store_true",
        help="NXG: record its event loop's late ticks (wall and loop-thread CPU) through the storm",
    )
    p.add_argument(
        "--pin",
        nargs="?",
        const="auto",
        default=None,
        metavar="BROKER/CLIENTS",
        help="run every broker on one CPU set and the bench's own processes on the other "
        "(e.g. 0/1; bare --pin = first half / second half of the CPUs); default: unpinned",
    )
    ns = p.parse_args(argv)
    try:
        pin = parse_pin(ns.pin) if ns.pin is not None else None
    except PinError as exc:
        p.error(str(exc))
    names = {v: k for k, v in BROKERS.items()}
    only: list[str] = []
    for item in (x.strip().lower() for x in ns.only.split(",") if x.strip()):
        key = item if item in BROKERS else names.get(item)
        if key is None:
            p.error(f"--only: unknown broker {item!r} (a/amqtt, b/nxg, c/mosquitto, d/nxg-mosquitto)")
        if key not in only:
            only.append(key)
    return Config(
        devices=ns.devices if ns.devices is not None else 200,
        idle_devices=ns.idle_devices if ns.idle_devices is not None else (1000 if ns.quick else 5000),
        duration=ns.duration if ns.duration is not None else (2.0 if ns.quick else 5.0),
        warmup=ns.warmup if ns.warmup is not None else (0.5 if ns.quick else 1.0),
        grace=ns.grace,
        only=only,
        publishers=max(1, ns.publishers),
        idle_procs=max(1, ns.idle_procs),
        inflight=max(1, ns.inflight),
        q0_batch=max(1, ns.q0_batch),
        q0_window=max(1, ns.q0_window),
        paced_rate=ns.paced_rate,
        paced_rate_idle=ns.paced_rate_idle,
        paced_qos=ns.paced_qos,
        gen_check=not ns.no_gen_check and not ns.storm_only,
        amqtt_uvloop=not ns.amqtt_asyncio,
        mosquitto_inflight=ns.mosquitto_inflight,
        json_path=ns.json,
        keep=ns.keep,
        storm=max(0, ns.storm),
        storm_rate=ns.storm_rate,
        storm_bad=ns.storm_bad,
        storm_budget=max(1.0, ns.storm_budget),
        storm_concurrency=max(1, ns.storm_concurrency),
        storm_bad_addr=ns.storm_bad_addr,
        storm_bad_kind=ns.storm_bad_kind,
        storm_only=ns.storm_only,
        loop_stalls=ns.loop_stalls,
        pin=pin,
    )


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def handler(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=220)
    if cfg.pin is not None:
        cfg.pin.apply_to_clients()  # every worker process spawned from here on inherits it
    started = time.time()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    bench = Bench(cfg, progress, console)
    try:
        with sigterm_as_interrupt(), progress:
            generator, reports = bench.run()
    except KeyboardInterrupt:
        console.print("[red]interrupted; stopping brokers and workers[/red]")
        bench.cleanup()
        return 130
    finally:
        bench.cleanup()
    elapsed = time.time() - started
    console.print(build_table(cfg, generator, reports, elapsed))
    if cfg.keep:
        console.print(f"work dir kept: {bench.workdir}")
    if cfg.json_path is not None:
        data = {
            "config": {
                k: (str(v) if isinstance(v, Path) else v.describe() if isinstance(v, Pin) else v)
                for k, v in cfg.__dict__.items()
            },
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "elapsed_s": elapsed,
            "generator": {k: v.as_dict() for k, v in generator.items()},
            "brokers": {TITLES[r.key]: r.as_dict() for r in reports},
        }
        cfg.json_path.write_text(json.dumps(data, indent=2, default=str, allow_nan=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
