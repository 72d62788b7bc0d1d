"""RefusalLines: which refused CONNECTs get a log line (the broker-level test is in
tests/broker/plugins/test_lockouts.py)."""

from __future__ import annotations

import pytest

from nxg_mqtt.broker import refusals
from nxg_mqtt.broker.refusals import RefusalLines
from nxg_mqtt.errors import ConnectRefused

LOCKED = ConnectRefused.SERVER_UNAVAILABLE


def test_only_locked_out_refusals_are_thinned_and_per_address() -> None:
    lines = RefusalLines(interval=10.0)
    for code in (ConnectRefused.BAD_CREDENTIALS, ConnectRefused.NOT_AUTHORIZED, ConnectRefused.BAD_PROTOCOL):
        assert [lines.admit(code, "10.0.0.1", 0.0) for _ in range(3)] == [0, 0, 0]
    assert lines.admit(LOCKED, None, 0.0) == 0  # no address to key on: always logged
    assert [lines.admit(LOCKED, "10.0.0.1", t) for t in (0.0, 1.0, 2.0)] == [0, None, None]
    assert lines.admit(LOCKED, "10.0.0.2", 2.0) == 0  # another address has its own interval
    assert lines.admit(LOCKED, "10.0.0.1", 10.0) == 2
    assert lines.admit(LOCKED, "10.0.0.1", 11.0) is None
    assert lines.admit(LOCKED, "10.0.0.1", 25.0) == 1


def test_the_remembered_addresses_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(refusals, "MAX_ADDRESSES", 3)
    lines = RefusalLines(interval=10.0)
    for n in range(3):
        assert lines.admit(LOCKED, f"10.0.1.{n}", 0.0) == 0
    assert lines.admit(LOCKED, "10.0.1.9", 5.0) == 0  # full, none stale: forgotten all at once
    assert len(lines._last) == 1
    for n in range(2):
        assert lines.admit(LOCKED, f"10.0.2.{n}", 20.0) == 0
    assert lines.admit(LOCKED, "10.0.2.9", 21.0) == 0  # full: the stale 10.0.1.9 goes, the fresh stay
    assert set(lines._last) == {"10.0.2.0", "10.0.2.1", "10.0.2.9"}
