"""BrokerSession delivery: the queue bound and its drop policy, packet ids, resend with DUP."""

from __future__ import annotations

from typing import cast

from nxg_mqtt.broker.connection import Connection
from nxg_mqtt.broker.message import OutgoingMessage
from nxg_mqtt.broker.server import STAT_KEYS
from nxg_mqtt.broker.session import BrokerSession
from nxg_mqtt.mqtt.codec import Publish, PubRel, decode


class FakeConnection:
    def __init__(self, blocked: bool = False) -> None:
        self.blocked = blocked
        self.sent = bytearray()

    def write(self, data: bytes) -> None:
        self.sent += data

    def packets(self) -> list[object]:
        packets, _ = decode(self.sent)
        return list(packets)


def make(limit: int, conn: FakeConnection | None) -> BrokerSession:
    session = BrokerSession("s", queue_limit=limit, stats=dict.fromkeys(STAT_KEYS, 0))
    session.conn = cast(Connection, conn)
    return session


def message(n: int, qos: int) -> OutgoingMessage:
    return OutgoingMessage("t", b"%d" % n, qos)


def test_full_queue_drops_qos0_first_then_new_qos1() -> None:
    session = make(3, FakeConnection(blocked=True))
    assert session.deliver(message(0, 0))
    assert session.deliver(message(1, 1))
    assert session.deliver(message(2, 0))
    assert not session.deliver(message(3, 0))  # full: the new QoS 0 is dropped
    assert session.deliver(message(4, 1))  # full: evicts the oldest QoS 0 (0)
    assert session.deliver(message(5, 1))  # evicts QoS 0 (2)
    assert not session.deliver(message(6, 2))  # nothing left to evict: dropped, counted
    assert [m.data for m in session.queue] == [b"1", b"4", b"5"]
    assert session.stats["dropped_qos0"] == 3
    assert session.stats["dropped_qos1"] == 1
    assert session.overflowed


def test_offline_keeps_only_qos1_and_2() -> None:
    session = make(10, None)
    assert not session.deliver(message(0, 0))
    assert session.deliver(message(1, 1))
    assert session.deliver(message(2, 2))
    assert [m.qos for m in session.queue] == [1, 2]
    assert session.stats["dropped_qos0"] == 0  # offline QoS 0 is not a drop, it is the rule
    assert not session.overflowed


def test_inflight_window_and_pump_in_order() -> None:
    conn = FakeConnection()
    session = make(2, conn)
    for n in range(4):
        assert session.deliver(message(n, 1))
    assert len(session.inflight) == 2
    assert [m.data for m in session.queue] == [b"2", b"3"]
    first = next(iter(session.inflight))
    session.acknowledge(first, 1)
    assert [m.data for m in session.queue] == [b"3"]
    payloads = [p.payload for p in conn.packets() if isinstance(p, Publish)]
    assert payloads == [b"0", b"1", b"2"]


def test_resend_sets_dup_and_pubrel() -> None:
    conn = FakeConnection()
    session = make(10, conn)
    session.deliver(message(0, 1))
    session.deliver(message(1, 2))
    ids = list(session.inflight)
    assert session.received(ids[1])
    conn.sent.clear()
    session.resend_inflight()
    assert conn.packets() == [Publish("t", b"0", 1, False, True, ids[0]), PubRel(ids[1])]


def test_packet_ids_skip_those_in_flight() -> None:
    session = make(70_000, FakeConnection())
    for n in range(65_535):
        session.deliver(message(n, 1))
    assert len(set(session.inflight)) == 65_535
    assert session.deliver(message(65_535, 1))  # window full: queued, not a packet id collision
    assert len(session.queue) == 1
    session.acknowledge(300, 1)
    assert session.inflight[300] is not None
    assert session.inflight[300].data == b"65535"
    session.acknowledge(301, 1)
    session.deliver(message(99, 1))
    assert session.inflight[301] is not None
    assert session.inflight[301].data == b"99"
