"""Standalone load generator for a running NXG broker.

    .venv/bin/nxg-mqtt broker --mqtt-port 1883 --data ./nxg-data &
    .venv/bin/python -m bench.load --data ./nxg-data --port 1883 --devices 200 --rate 2000 --duration 10

Provisions (once; remembered in DIR/bench-devices.json) and pairs `--devices` devices through the
Python API on the same data dir, connects them from `--publishers` processes, publishes 100-byte
JSON telemetry to nxg/{serial}/telemetry at `--rate` msg/s in total (0 = as fast as the broker
takes it), then reads the broker's SQLite store (read-only) and prints telemetry msg/s stored and
the publish→stored latency (stored_at − the payload's ts). With the internal secret (`--secret`,
default: DIR/internal_secret) a `bridge` subscriber on nxg/+/telemetry also measures delivery.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from bench.common import GRACE_S, Cred
from bench.nxg import Store, provision, serials
from bench.runner import PhaseResult, Runner


class ExternalBroker:
    """A broker we did not start: CPU and RSS via psutil when its listening pid can be found."""

    def __init__(self, host: str, port: int, subscriber: Cred, pid: int | None) -> None:
        self.host = host
        self.port = port
        self.subscriber = subscriber
        self._pid = pid

    @property
    def pid(self) -> int | None:
        return self._pid

    def rss(self) -> int:
        if self._pid is None:
            return 0
        try:
            rss: int = psutil.Process(self._pid).memory_info().rss
            return rss
        except psutil.Error:
            return 0

    def cpu_times(self) -> float:
        if self._pid is None:
            return math.nan
        try:
            t = psutil.Process(self._pid).cpu_times()
            return float(t.user + t.system)
        except psutil.Error:
            return math.nan

    def cpu_by_process(self) -> dict[str, float]:
        cpu = self.cpu_times()
        return {} if math.isnan(cpu) else {"broker": cpu}


def listening_pid(port: int) -> int | None:
    try:
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return int(conn.pid) if conn.pid else None
    except psutil.Error:
        return None
    return None


def fmt(v: float, unit: str = "") -> str:
    if math.isnan(v):
        return "–"
    return f"{v:,.0f}{unit}" if abs(v) >= 100 else f"{v:,.1f}{unit}"


def report(res: PhaseResult, args: argparse.Namespace, console: Console) -> None:
    mode = f"{args.rate:,.0f} msg/s paced" if args.rate > 0 else "saturation"
    table = Table(
        title=f"NXG load: {args.devices} devices, QoS {args.qos}, {mode}, {args.duration:g} s window",
        show_header=True,
        header_style="bold",
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    sent = res.sent / (args.duration + args.warmup)
    table.add_row("published msg/s (whole run)", fmt(sent))
    table.add_row("accepted msg/s" + (" (PUBACKs)" if args.qos else " (written)"), fmt(res.accepted))
    if args.qos:
        table.add_row("PUBLISH→PUBACK p50 / p99 ms", f"{fmt(res.ack_p50)} / {fmt(res.ack_p99)}")
    table.add_row("telemetry stored msg/s", fmt(res.stored))
    table.add_row(f"stored after the window (≤{GRACE_S:g} s), rows", f"{res.stored_backlog:,}")
    table.add_row("publish→stored p50 ms", fmt(res.store_p50))
    table.add_row("publish→stored p99 ms", fmt(res.store_p99))
    table.add_row("publish→stored max ms", fmt(res.store_max))
    table.add_row("rows stored of those sent in the window", f"{res.store_n:,}")
    if not math.isnan(res.delivered):
        table.add_row("delivered msg/s (bridge subscriber)", fmt(res.delivered))
        table.add_row("publish→delivered p50 / p99 ms", f"{fmt(res.lat_p50)} / {fmt(res.lat_p99)}")
    table.add_row("broker CPU (% of a core)", fmt(res.broker_cpu, "%"))
    table.add_row("broker RSS peak MB", fmt(res.rss_peak / 2**20) if res.rss_peak else "–")
    console.print(table)
    for err in res.errors:
        console.print(f"[red]{err.splitlines()[0]}[/red]")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the running broker's data dir")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883, help="the broker's MQTT port")
    p.add_argument("--secret", help="internal secret (default: DIR/internal_secret); enables the subscriber")
    p.add_argument("--no-subscriber", action="store_true", help="do not measure delivery")
    p.add_argument("--devices", type=int, default=200)
    p.add_argument("--rate", type=float, default=2000.0, help="total msg/s; 0 = saturation")
    p.add_argument("--duration", type=float, default=10.0, help="measurement window, s")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--qos", type=int, choices=(0, 1), default=1)
    p.add_argument("--publishers", type=int, default=2, help="publisher processes")
    p.add_argument("--inflight", type=int, default=16, help="saturation QoS 1: unacked messages per device")
    p.add_argument("--prefix", default="load", help="serial prefix of the provisioned devices")
    args = p.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=120)

    db = args.data / "nxg.sqlite3"
    if not db.exists():
        p.error(f"{db} does not exist: is --data the broker's data dir?")
    with console.status(f"provisioning {args.devices} devices"):
        creds = provision(args.data, serials(args.devices, args.prefix))
    secret = args.secret
    if secret is None and (args.data / "internal_secret").exists():
        secret = (args.data / "internal_secret").read_text().strip()
    subscriber = bool(secret) and not args.no_subscriber
    target = ExternalBroker(args.host, args.port, Cred("bench-load-sub", "bridge", secret), listening_pid(args.port))
    runner = Runner(args.publishers, 1, inflight=args.inflight)
    try:
        with console.status("running") as status:
            runner.tick = lambda msg: status.update(msg)
            res = runner.phase(
                target,
                "load",
                creds,
                "paced" if args.rate > 0 else "sat",
                args.qos,
                args.duration,
                args.warmup,
                rate=args.rate,
                subscriber=subscriber,
                store=Store(db),
                store_latency=True,
            )
    except KeyboardInterrupt:
        return 130
    finally:
        runner.shutdown()
    report(res, args, console)
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
