"""Loaded into the NXG broker process by `broker_bench --loop-stalls` (this directory on PYTHONPATH).

A 1 ms timer chain on the broker's event loop records, for every tick that came late, its wall
time and the CPU time the loop's own thread used since the tick before: the length of the loop
passes in between, in CPU time. Wall time alone cannot tell a long pass from a process the OS
did not schedule (on a loaded machine most late ticks are the latter); thread CPU time can.
Written to $NXG_BENCH_LOOP_LOG at exit, one "unix_ts wall_ms cpu_ms" line per late tick.
"""

from __future__ import annotations

import atexit
import os
import sys
import time

_LOG = os.environ.get("NXG_BENCH_LOOP_LOG")

if _LOG and "broker" in sys.argv[1:2]:
    import asyncio

    _late: list[tuple[float, float, float]] = []
    _state: dict[str, object] = {}

    def _tick() -> None:
        wall, cpu = time.time(), time.thread_time()
        last = _state.get("last")
        if isinstance(last, tuple):
            d_wall, d_cpu = wall - last[0], cpu - last[1]
            if d_wall > 0.003 or d_cpu > 0.001:
                _late.append((wall, d_wall * 1000.0, d_cpu * 1000.0))
        _state["last"] = (wall, cpu)
        loop = _state["loop"]
        assert isinstance(loop, asyncio.AbstractEventLoop)
        loop.call_later(0.001, _tick)

    def _dump(path: str = _LOG) -> None:
        with open(path, "w") as out:
            out.writelines(f"{t:.4f} {w:.2f} {c:.2f}\n" for t, w, c in _late)

    atexit.register(_dump)

    from nxg_mqtt.broker import server as _server

    _enter = _server.NxgBroker.__aenter__

    async def _aenter(self: _server.NxgBroker) -> _server.NxgBroker:
        broker = await _enter(self)
        _state["loop"] = asyncio.get_running_loop()
        _state["loop"].call_soon(_tick)  # type: ignore[attr-defined]
        return broker

    _server.NxgBroker.__aenter__ = _aenter  # type: ignore[method-assign]
