"""Sliding windows and lockouts (nxg_mqtt/ratelimit.py), driven by an explicit `now`."""

from __future__ import annotations

from nxg_mqtt.ratelimit import Lockout, SlidingWindow


def test_window_allows_up_to_the_limit_then_refuses() -> None:
    window = SlidingWindow(3, window_s=60.0)
    for n in range(3):
        assert window.allow("a", 100.0 + n)
        assert window.hit("a", 100.0 + n) == n + 1
    assert not window.allow("a", 103.0)
    assert window.allow("b", 103.0), "keys are counted apart"


def test_window_forgets_events_older_than_the_window() -> None:
    window = SlidingWindow(2, window_s=10.0)
    window.hit("a", 0.0)
    window.hit("a", 5.0)
    assert not window.allow("a", 9.9)
    assert window.allow("a", 10.0), "the event at 0.0 left the window at exactly 10.0"
    assert window.count("a", 15.0) == 0


def test_allow_does_not_record() -> None:
    window = SlidingWindow(1)
    for _ in range(5):
        assert window.allow("a", 1.0)
    assert window.count("a", 1.0) == 0


def test_a_limit_of_zero_or_less_disables_the_check() -> None:
    for limit in (0, -1):
        window = SlidingWindow(limit)
        for n in range(100):
            window.hit("a", float(n) / 1000)
        assert window.allow("a", 0.1)


def test_idle_keys_are_forgotten_under_a_spray_of_sources() -> None:
    window = SlidingWindow(5, window_s=1.0)
    for n in range(10_001):
        window.hit(f"10.0.{n // 256}.{n % 256}", 0.0)
    window.hit("late", 5.0)  # beyond 10,000 keys: the idle ones go
    assert window.count("late", 5.0) == 1
    assert len(window._events) < 100


def test_lockout_locks_at_the_threshold_for_lock_s() -> None:
    lockout = Lockout(threshold=3, lock_s=300.0, window_s=60.0)
    assert not lockout.fail("1.2.3.4", 0.0)
    assert not lockout.fail("1.2.3.4", 1.0)
    assert not lockout.locked("1.2.3.4", 1.5)
    assert lockout.fail("1.2.3.4", 2.0)
    assert lockout.locked("1.2.3.4", 2.0) and lockout.locked("1.2.3.4", 301.9)
    assert not lockout.locked("5.6.7.8", 2.0)
    assert not lockout.locked("1.2.3.4", 302.0), "the lock ends after lock_s"


def test_lockout_failures_spread_beyond_the_window_do_not_lock() -> None:
    lockout = Lockout(threshold=2, lock_s=300.0, window_s=60.0)
    assert not lockout.fail("a", 0.0)
    assert not lockout.fail("a", 61.0)
    assert not lockout.locked("a", 61.0)


def test_lockout_threshold_zero_never_locks() -> None:
    lockout = Lockout(threshold=0, lock_s=300.0)
    assert not any(lockout.fail("a", float(n)) for n in range(50))
    assert not lockout.locked("a", 50.0)
