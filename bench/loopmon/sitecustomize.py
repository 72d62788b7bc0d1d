"""Loaded into the NXG broker process by `broker_bench --loop-stalls` (this directory on PYTHONPATH).

A 1 ms timer chain on the broker's event loop records, for every tick that came late, its wall
time, the CPU time the loop's own thread used since the tick before (the length of the loop passes
in between) and the time the thread waited on the OS run queue (`/proc/thread-self/schedstat`).
Wall time alone cannot tell a long pass from a process the OS did not schedule or a loop thread
waiting for the GIL (held by the database or history threads): CPU time is the first, run-queue
time the second, and what is left of the wall time is the third, or a poll that woke late (on a
VM, a virtual CPU the host did not run).

Also recorded: the loop thread's cumulative CPU time every 10 ms (loop CPU per CONNECT = the storm
window's CPU less the quiet rate) and that of the process's other threads (their runs hold the
GIL), every garbage collection (generation, duration, thread), and the collector's configuration
once the broker runs (thresholds, frozen objects: `tune_gc`'s work).
Written to $NXG_BENCH_LOOP_LOG at exit, one line per record, its kind first:
`tick unix_ts wall_ms cpu_ms runq_ms steal_ms`, `cpu unix_ts cpu_s other_threads_cpu_s`,
`gc unix_ts gen ms collected main`, `gcconf t0 t1 t2 frozen`.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time

_LOG = os.environ.get("NXG_BENCH_LOOP_LOG")

if _LOG and "broker" in sys.argv[1:2]:
    import asyncio
    import gc

    _lines: list[str] = []
    _state: dict[str, object] = {}
    _main = threading.main_thread().ident

    def _runq_s() -> float:
        """Seconds this thread has waited for a CPU (0 where schedstat is missing)."""
        try:
            with open("/proc/thread-self/schedstat") as f:
                return int(f.read().split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return 0.0

    def _others_s() -> float:
        """CPU seconds of the process's other threads (database, history writer, executors)."""
        total = 0.0
        me = str(threading.get_native_id())
        try:
            for tid in os.listdir("/proc/self/task"):
                if tid != me:
                    with open(f"/proc/self/task/{tid}/schedstat") as f:
                        total += int(f.read().split()[0]) / 1e9
        except (OSError, IndexError, ValueError):
            pass  # a thread ended meanwhile: this sample is a little short
        return total

    def _steal_s() -> float:
        """Seconds the hypervisor kept this VM's CPUs from running it, summed over the CPUs
        (`/proc/stat`'s steal column, 10 ms resolution; ≈ 30 µs a read, i.e. ≈ 3 % of a core at
        one read per tick: the price of telling a stall the host made from one of our own)."""
        try:
            with open("/proc/stat", "rb") as f:
                return int(f.readline().split()[8]) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def _tick() -> None:
        wall, cpu, runq, steal = time.time(), time.thread_time(), _runq_s(), _steal_s()
        last = _state.get("last")
        if isinstance(last, tuple):
            d_wall, d_cpu = wall - last[0], cpu - last[1]
            if d_wall > 0.003 or d_cpu > 0.001:
                _lines.append(
                    f"tick {wall:.4f} {d_wall * 1e3:.2f} {d_cpu * 1e3:.2f} {(runq - last[2]) * 1e3:.2f}"
                    f" {(steal - last[3]) * 1e3:.0f}"
                )
        _state["last"] = (wall, cpu, runq, steal)
        if wall - float(_state.get("sampled", 0.0)) >= 0.01:  # type: ignore[arg-type]
            _state["sampled"] = wall
            _lines.append(f"cpu {wall:.4f} {cpu:.5f} {_others_s():.5f}")
        if "gcconf" not in _state:
            # the first tick runs after the CLI's tune_gc() (it follows the broker's start)
            _state["gcconf"] = True
            t0, t1, t2 = gc.get_threshold()
            _lines.append(f"gcconf {t0} {t1} {t2} {gc.get_freeze_count()}")
        loop = _state["loop"]
        assert isinstance(loop, asyncio.AbstractEventLoop)
        loop.call_later(0.001, _tick)

    def _on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            _state["gc_start"] = time.perf_counter()
            return
        started = _state.get("gc_start")
        if isinstance(started, float):
            ms = (time.perf_counter() - started) * 1e3
            main = int(threading.get_ident() == _main)
            _lines.append(f"gc {time.time():.4f} {info['generation']} {ms:.3f} {info['collected']} {main}")

    gc.callbacks.append(_on_gc)

    def _dump(path: str = _LOG) -> None:
        with open(path, "w") as out:
            out.writelines(line + "\n" for line in _lines)

    atexit.register(_dump)

    from nxg_mqtt.broker import server as _server

    _enter = _server.NxgBroker.__aenter__

    async def _aenter(self: _server.NxgBroker) -> _server.NxgBroker:
        broker = await _enter(self)
        _state["loop"] = asyncio.get_running_loop()
        _state["loop"].call_soon(_tick)  # type: ignore[attr-defined]
        return broker

    _server.NxgBroker.__aenter__ = _aenter  # type: ignore[method-assign]
