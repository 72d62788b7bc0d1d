"""`--pin`: the system under test on one CPU set, the bench's own client processes on the other.

On a real site the devices that connect are other machines; on this 2-core VM the bench's load
generator, publishers and subscriber otherwise take their CPU from the broker they measure. With
a pin, the bench process moves itself to the client CPUs (every worker it spawns inherits that),
and starts each broker from inside `broker_side()`, so the broker process, its threads and its
children (profile d: Mosquitto under the serving process) are born on the broker CPUs. Nothing
else on the machine is pinned: other processes still run on either set.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import psutil


class PinError(ValueError):
    """A `--pin` value that names no usable CPU split."""


@dataclass(frozen=True)
class Pin:
    broker: frozenset[int]
    clients: frozenset[int]

    def describe(self) -> str:
        if self.broker > self.clients:
            return (
                f"the bench's own processes on CPU {_cpus(self.clients)} only, "
                f"the broker (and its children) on CPU {_cpus(self.broker)}"
            )
        return (
            f"broker (and its children) on CPU {_cpus(self.broker)}, "
            f"the bench's own processes on CPU {_cpus(self.clients)}"
        )

    def apply_to_clients(self) -> None:
        """The calling (bench) process and every process it starts from now on: the client CPUs."""
        os.sched_setaffinity(0, self.clients)

    @contextlib.contextmanager
    def broker_side(self) -> Iterator[None]:
        """Start the broker inside this block: it inherits the broker CPUs at fork, as do its
        threads and children; the bench process goes back to the client CPUs afterwards."""
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self.broker)
        try:
            yield
        finally:
            os.sched_setaffinity(0, before)

    def strays(self, pid: int) -> int:
        """Threads of `pid` and its descendants allowed outside the broker CPUs (expected 0)."""
        count = 0
        try:
            procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                for thread in proc.threads():
                    with contextlib.suppress(OSError):
                        if os.sched_getaffinity(thread.id) - self.broker:
                            count += 1
        return count


def _cpus(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def _parse_set(text: str) -> frozenset[int]:
    out: set[int] = set()
    for part in (p.strip() for p in text.split(",") if p.strip()):
        lo, _, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError as exc:
            raise PinError(f"not a CPU list: {text!r}") from exc
        out.update(range(first, last + 1))
    return frozenset(out)


def parse_pin(spec: str) -> Pin:
    """`auto` (the first half of the usable CPUs for the broker, the rest for the clients) or
    `BROKER/CLIENTS`, each a CPU list like `0` or `0-1,3`. The sets may overlap: `0-1/1` keeps
    the bench's processes off CPU 0 and lets the broker use both."""
    usable = frozenset(os.sched_getaffinity(0))
    if spec == "auto":
        if len(usable) < 2:
            raise PinError(f"--pin needs 2 usable CPUs, this process may use {len(usable)}")
        ordered = sorted(usable)
        half = len(ordered) // 2
        return Pin(frozenset(ordered[:half]), frozenset(ordered[half:]))
    broker_text, sep, clients_text = spec.partition("/")
    if not sep:
        raise PinError(f"--pin: expected 'auto' or BROKER/CLIENTS (e.g. 0/1), got {spec!r}")
    pin = Pin(_parse_set(broker_text), _parse_set(clients_text))
    if not pin.broker or not pin.clients:
        raise PinError(f"--pin: both CPU sets must be non-empty: {spec!r}")
    if not (pin.broker | pin.clients) <= usable:
        raise PinError(f"--pin: CPUs outside the usable set {_cpus(usable)}: {spec!r}")
    return pin
