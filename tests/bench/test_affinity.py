"""`bench.broker_bench --pin`: the CPU split it parses and the processes it starts on each side."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.affinity import PinError, parse_pin

usable = sorted(os.sched_getaffinity(0))
two_cpus = pytest.mark.skipif(len(usable) < 2, reason="needs 2 usable CPUs")


@two_cpus
def test_auto_splits_the_usable_cpus_in_two_halves() -> None:
    pin = parse_pin("auto")
    assert pin.broker | pin.clients == set(usable)
    assert not pin.broker & pin.clients
    assert max(pin.broker) < min(pin.clients)


@two_cpus
def test_lists_ranges_and_overlap() -> None:
    first, second = usable[0], usable[1]
    pin = parse_pin(f"{first}-{second}/{second}")
    assert pin.broker == {first, second} and pin.clients == {second}
    assert "only" in pin.describe()


@pytest.mark.parametrize("spec", ["0", "x/1", "/1", "0/", "0/4096"])
def test_bad_values_are_refused(spec: str) -> None:
    with pytest.raises(PinError):
        parse_pin(spec)


@two_cpus
def test_a_broker_started_inside_broker_side_is_born_on_the_broker_cpus() -> None:
    pin = parse_pin(f"{usable[0]}/{usable[1]}")
    before = os.sched_getaffinity(0)
    child_code = "import os, threading, time; threading.Thread(target=time.sleep, args=(5,)).start(); time.sleep(5)"
    with pin.broker_side():
        proc = subprocess.Popen([sys.executable, "-c", child_code])
    try:
        assert os.sched_getaffinity(0) == before  # the bench side is back where it was
        assert os.sched_getaffinity(proc.pid) == pin.broker
        assert pin.strays(proc.pid) == 0
    finally:
        proc.kill()
        proc.wait()


@two_cpus
def test_strays_counts_threads_outside_the_broker_cpus() -> None:
    pin = parse_pin(f"{usable[0]}/{usable[1]}")
    os.sched_setaffinity(0, set(usable))
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        assert pin.strays(proc.pid) >= 1
    finally:
        proc.kill()
        proc.wait()
