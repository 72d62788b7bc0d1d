"""BrokerSession: one MQTT client id's state, connected or not.

The attribute names plugins read are amqtt's (`client_id`, `username`, `will_topic`, …) so amqtt
plugins work unchanged; the NXG fields are typed (`principal`, `serial`, `receive_all`, the pairing
fields), set by the auth and pairing plugins. The `principal` is who the session authenticated as:
the engine lets a CONNECT take over or resume a client id's session only for the same principal.
Delivery lives here because it is session state: a message is written straight to the connection
when nothing is queued ahead of it, otherwise it joins a bounded queue. When the queue is full,
QoS 0 goes first (dropped and counted); a QoS 1/2 message is only dropped when no QoS 0 is left
to evict, and that is logged as a warning.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nxg_mqtt.broker.message import OutgoingMessage
from nxg_mqtt.models import ApiKey
from nxg_mqtt.mqtt.codec import ProtocolError, encode_publish_topic, encode_pubrel, encode_topic
from nxg_mqtt.protocol import Role

if TYPE_CHECKING:
    from nxg_mqtt.broker.connection import Connection

logger = logging.getLogger("nxg_mqtt.broker")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a connection authenticated as; two connections meet (takeover, resume) only if equal.

    `identity` is the device serial for `device`, the serial whose connection code opened a `pair`
    session, the API key's id for `key`, and empty for `bridge` and `anonymous` (one principal
    each). `role` is None only for a session accepted by a plugin that knows no NXG roles; the
    engine then uses the user name as the identity.
    """

    role: Role | None
    identity: str = ""

    def __str__(self) -> str:
        return f"{self.role or 'user'}:{self.identity}" if self.identity else str(self.role)

    def owns(self, client_id: str) -> bool:
        """A device's serial is its own client id (PROTOCOL §2): its CONNECT always gets it."""
        return self.role is Role.DEVICE and self.identity == client_id

    @classmethod
    def default(cls, username: str | None) -> Principal:
        """The principal of a session no auth plugin named: anonymous, or its user name."""
        return cls(Role.ANONYMOUS) if username is None else cls(None, username)


class BrokerSession:
    __slots__ = (
        "_next_packet_id",
        "api_key",
        "clean_session",
        "client_id",
        "conn",
        "connected",
        "disconnect_reason",
        "inbound_qos2",
        "inflight",
        "is_anonymous",
        "keep_alive",
        "max_inflight",
        "overflowed",
        "pairing_code",
        "pairing_expiry",
        "password",
        "peer_cert",
        "principal",
        "queue",
        "queue_limit",
        "receive_all",
        "remote_address",
        "remote_port",
        "room",
        "serial",
        "stats",
        "subscriptions",
        "username",
        "will_flag",
        "will_message",
        "will_qos",
        "will_retain",
        "will_topic",
    )

    def __init__(self, client_id: str, *, queue_limit: int, stats: dict[str, int]) -> None:
        self.client_id = client_id
        self.username: str | None = None
        self.password: str | None = None
        self.remote_address: str | None = None
        self.remote_port: int | None = None
        self.peer_cert: bytes | None = None  # the verified TLS client certificate (DER), if any
        self.keep_alive = 0
        self.clean_session = True
        self.will_flag = False
        self.will_topic: str | None = None
        self.will_message: bytes | None = None
        self.will_qos = 0
        self.will_retain = False
        self.is_anonymous = False
        # set by the auth plugin; the engine fills in `Principal.default` if no plugin did
        self.principal: Principal | None = None
        self.serial: str | None = None  # the device this session speaks for (device, pair)
        self.api_key: ApiKey | None = None  # the key a `key` session authenticated with (its ACL)
        self.receive_all = False  # receives whatever it subscribes to: no RECEIVE check (bridge)
        self.pairing_code: str | None = None  # the code a pairing session was opened with
        self.pairing_expiry: asyncio.TimerHandle | None = None  # ends a pairing session
        self.disconnect_reason = ""
        self.connected = False
        self.subscriptions: dict[str, int] = {}
        self.conn: Connection | None = None
        self.queue: deque[OutgoingMessage] = deque()
        self.queue_limit = max(1, queue_limit)
        self.max_inflight = min(self.queue_limit, 65_535)  # unacknowledged QoS 1/2: packet ids are 16-bit
        # packet id -> message awaiting PUBACK/PUBREC, or None once PUBREL was sent (awaiting PUBCOMP)
        self.inflight: dict[int, OutgoingMessage | None] = {}
        self.inbound_qos2: set[int] = set()  # QoS 2 packet ids routed, awaiting PUBREL
        self.stats = stats
        self.overflowed = False
        self._next_packet_id = 0
        # set when a congested queue has drained enough for waiting publishers to go on
        self.room: asyncio.Event | None = None

    @property
    def role(self) -> Role | None:
        return self.principal.role if self.principal is not None else None

    def __repr__(self) -> str:
        return f"BrokerSession(client_id={self.client_id!r}, connected={self.connected})"

    def set_queue_limit(self, limit: int) -> None:
        self.queue_limit = max(1, limit)
        self.max_inflight = min(self.queue_limit, 65_535)

    def adopt(self, other: BrokerSession) -> None:
        """Take the connection-level fields of a fresh CONNECT, keeping subscriptions and queues."""
        for name in (
            "username",
            "password",
            "remote_address",
            "remote_port",
            "peer_cert",
            "keep_alive",
            "clean_session",
            "will_flag",
            "will_topic",
            "will_message",
            "will_qos",
            "will_retain",
            "is_anonymous",
            "principal",
            "serial",
            "receive_all",
            "pairing_code",
            "pairing_expiry",
        ):
            setattr(self, name, getattr(other, name))
        self.set_queue_limit(other.queue_limit)
        self.disconnect_reason = ""

    # ------------------------------------------------------------------------------- delivery

    def deliver(self, message: OutgoingMessage) -> bool:
        """Send or queue `message`; False if it was dropped (offline QoS 0 or a full queue)."""
        conn = self.conn
        if conn is not None and not conn.blocked and not self.queue:
            if not message.qos:
                conn.write(_qos0_packet(message))
                return True
            if len(self.inflight) < self.max_inflight:
                self._send_tracked(conn, message)
                return True
        elif conn is None and not message.qos:
            return False  # offline sessions keep QoS 1/2 only
        return self._enqueue(message)

    def _enqueue(self, message: OutgoingMessage) -> bool:
        queue = self.queue
        if len(queue) < self.queue_limit:
            queue.append(message)
            return True
        if not message.qos:
            self._count_drop(message)
            return False
        for index, queued in enumerate(queue):  # evict the oldest QoS 0 to make room
            if not queued.qos:
                del queue[index]
                self._count_drop(queued)
                queue.append(message)
                return True
        if self.conn is not None:
            self.overflowed = True  # connected yet not keeping up: the sweep disconnects it
        self._count_drop(message)
        return False

    def _count_drop(self, message: OutgoingMessage) -> None:
        if message.qos:
            count = self.stats["dropped_qos1"] = self.stats["dropped_qos1"] + 1
            if count <= 10 or count % 100 == 0:  # never silent, but no log flood from one slow client
                logger.warning(
                    "session %s queue full (%d): dropped QoS %d message on %s (%d QoS 1/2 dropped so far)",
                    self.client_id,
                    self.queue_limit,
                    message.qos,
                    message.topic,
                    count,
                )
        else:
            count = self.stats["dropped_qos0"] = self.stats["dropped_qos0"] + 1
            if count == 1 or count % 1000 == 0:
                logger.info("session %s queue full: dropping QoS 0 messages (%d so far)", self.client_id, count)

    def _send_tracked(self, conn: Connection, message: OutgoingMessage) -> None:
        packet_id = self._allocate_packet_id()
        self.inflight[packet_id] = message
        if message.topic_bytes is None:
            message.topic_bytes = encode_topic(message.topic)
        conn.write(
            encode_publish_topic(message.topic_bytes, message.data, message.qos, message.retain, False, packet_id)
        )

    def _allocate_packet_id(self) -> int:
        packet_id = self._next_packet_id
        inflight = self.inflight
        for _ in range(65535):
            packet_id = packet_id % 65535 + 1
            if packet_id not in inflight:
                self._next_packet_id = packet_id
                return packet_id
        raise RuntimeError("no free packet id")  # unreachable: inflight is bounded by max_inflight

    def pump(self) -> None:
        """Move queued messages to the connection while the in-flight window has room."""
        conn = self.conn
        queue = self.queue
        if conn is None or not queue or conn.blocked:
            return
        while queue:
            message = queue[0]
            if message.qos:
                if len(self.inflight) >= self.max_inflight:
                    return
                queue.popleft()
                self._send_tracked(conn, message)
            else:
                queue.popleft()
                conn.write(_qos0_packet(message))
        self.overflowed = False
        if self.room is not None and len(queue) <= self.queue_limit // 8:
            self.room.set()

    @property
    def congested(self) -> bool:
        """The in-flight window is full and a backlog builds: publishers should wait."""
        return len(self.queue) > self.queue_limit // 4

    async def wait_room(self) -> None:
        room = self.room
        if room is None:
            room = self.room = asyncio.Event()
        room.clear()
        if not self.congested or self.conn is None:
            return
        await room.wait()

    def release_waiters(self) -> None:
        if self.room is not None:
            self.room.set()

    def resend_inflight(self) -> None:
        """On reconnect: unacknowledged PUBLISH again with DUP set, PUBREL for those past PUBREC."""
        conn = self.conn
        if conn is None:
            return
        for packet_id, message in self.inflight.items():
            if message is None:
                conn.write(encode_pubrel(packet_id))
            else:
                topic_bytes = message.topic_bytes or encode_topic(message.topic)
                conn.write(
                    encode_publish_topic(topic_bytes, message.data, message.qos, message.retain, True, packet_id)
                )

    def acknowledge(self, packet_id: int, qos: int) -> None:
        """PUBACK (`qos` 1) or PUBCOMP (`qos` 2): the flow for `packet_id` is complete.

        An unknown packet id is ignored (a late duplicate); an acknowledgement that does not fit
        the flow — PUBACK for QoS 2, PUBCOMP for QoS 1 or before PUBREC — breaks MQTT-4.3 and
        raises `ProtocolError`.
        """
        inflight = self.inflight
        if packet_id not in inflight:
            return
        message = inflight[packet_id]
        if qos == 1 and (message is None or message.qos != 1):
            raise ProtocolError(f"PUBACK for packet id {packet_id}, a QoS 2 flow")
        if qos == 2 and message is not None:
            raise ProtocolError(f"PUBCOMP for packet id {packet_id} before PUBREC, or for QoS 1")
        del inflight[packet_id]
        if self.queue:
            self.pump()

    def received(self, packet_id: int) -> bool:
        """PUBREC: True if `packet_id` was in flight (PUBREL must be sent either way).

        PUBREC for a QoS 1 message raises `ProtocolError`; a repeated PUBREC is answered again.
        """
        if packet_id not in self.inflight:
            return False
        message = self.inflight[packet_id]
        if message is not None:
            if message.qos != 2:
                raise ProtocolError(f"PUBREC for packet id {packet_id}, a QoS 1 flow")
            self.inflight[packet_id] = None
        return True

    def discard_state(self) -> None:
        self.release_waiters()
        self.subscriptions.clear()
        self.queue.clear()
        self.inflight.clear()
        self.inbound_qos2.clear()


def _qos0_packet(message: OutgoingMessage) -> bytes:
    # one QoS 0 message fans out as the same bytes to every subscriber: encode it once
    packet = message.packet
    if packet is None:
        if message.topic_bytes is None:
            message.topic_bytes = encode_topic(message.topic)
        packet = message.packet = encode_publish_topic(message.topic_bytes, message.data, 0, message.retain)
    return packet
