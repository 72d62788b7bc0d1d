"""One client connection: the read loop, the MQTT 3.1.1 flows, and the close path.

The loop reads a chunk, decodes every whole packet in it and handles them in order; there is no
task per packet and no per-packet timer (the broker's sweep checks `last_activity`). An inbound
PUBLISH is routed into its subscribers' write buffers before its PUBACK/PUBREC is written, so an
acknowledged message is never only in memory of a connection that may die; a message a plugin
stores is acknowledged only once its batch has committed (`_acknowledge`). After each chunk, a
publisher whose subscribers are buffering too much waits (bounded) for them to drain: the
publisher's TCP window fills instead of the broker's memory.

Whoever closes a connection (kick, takeover, sweep, shutdown) calls `abort(reason)`; the
connection's own task then runs `_finish()` exactly once — will, session cleanup, disconnect
event — and resolves `done`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING

from amqtt.contexts import Action

from nxg_mqtt.broker.message import IncomingMessage
from nxg_mqtt.broker.session import BrokerSession, Principal
from nxg_mqtt.broker.transport import HIGH_WATER, LOW_WATER, Transport
from nxg_mqtt.errors import ConnectRefused
from nxg_mqtt.mqtt.codec import (
    PINGRESP_BYTES,
    SUBACK_FAILURE,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    ProtocolError,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Subscribe,
    Unsubscribe,
    UnsupportedProtocol,
    decode,
    encode_connack,
    encode_puback,
    encode_pubcomp,
    encode_pubrec,
    encode_pubrel,
    encode_suback,
    encode_unsuback,
)
from nxg_mqtt.protocol import CloseReason
from nxg_mqtt.topics import valid_topic_filter, valid_topic_name

if TYPE_CHECKING:
    from nxg_mqtt.broker.server import NxgBroker

logger = logging.getLogger("nxg_mqtt.broker")

NO_WILL = frozenset({CloseReason.DISCONNECTED, CloseReason.SERVER_SHUTDOWN})


class Connection:
    __slots__ = (
        "_acks",
        "_pressure",
        "blocked",
        "broker",
        "close_reason",
        "connect_deadline",
        "done",
        "fresh",
        "keepalive_limit",
        "last_activity",
        "paused",
        "session",
        "transport",
        "write",
    )

    def __init__(self, broker: NxgBroker, transport: Transport) -> None:
        loop = asyncio.get_running_loop()
        self.broker = broker
        self.transport = transport
        self.write = transport.write
        self.session: BrokerSession | None = None
        self.blocked = False  # a slow subscriber: deliveries queue instead of writing
        self.paused = False  # waiting on subscribers' backpressure: not the client's silence
        self.close_reason: str | None = None
        self.last_activity = loop.time()
        self.connect_deadline = self.last_activity + broker.settings.connect_timeout_s
        self.keepalive_limit = 0.0
        self.fresh = False  # CONNACK sent, the client's next packet (its SUBSCRIBE) still ahead
        self.done: asyncio.Future[None] = loop.create_future()
        self._pressure: set[Connection] = set()
        self._acks: deque[tuple[asyncio.Future[None] | None, bytes]] = deque()  # waiting for a commit

    def __repr__(self) -> str:
        client = self.session.client_id if self.session else None
        return f"Connection({client!r}, {self.transport.remote_address}:{self.transport.remote_port})"

    def log_context(self, **more: object) -> dict[str, object]:
        """This connection's fields for a log line's `extra=` (JSON keys with --log-format json)."""
        session = self.session
        context: dict[str, object] = {"peer": f"{self.transport.remote_address}:{self.transport.remote_port}"}
        if session is not None:
            context |= {"client_id": session.client_id, "serial": session.serial}
        return context | more

    def abort(self, reason: str) -> None:
        """Close now; the first reason given is the one reported."""
        if self.close_reason is None:
            self.close_reason = reason
        self.transport.abort()

    def block(self) -> None:
        if not self.blocked:
            self.blocked = True
            logger.info("%r is not reading: queueing its messages", self)

    def note_pressure(self, subscriber: Connection) -> None:
        self._pressure.add(subscriber)

    # ------------------------------------------------------------------------------ read loop

    async def run(self) -> None:
        broker = self.broker
        broker.connections.add(self)
        try:
            await self._serve()
        except UnsupportedProtocol as exc:
            if self.session is None:
                # MQTT-3.1.2-2: answer 0x01, then close; one line per refusal, nothing counted
                self._refuse(ConnectRefused.BAD_PROTOCOL, f"{exc.protocol_name} level {exc.protocol_level}")
            else:
                broker.stats["protocol_errors"] += 1
                logger.info(
                    "%r: protocol error: second CONNECT (%s)",
                    self,
                    exc.message,
                    extra=self.log_context(reason=exc.message),
                )
                self.close_reason = CloseReason.PROTOCOL_ERROR
        except ProtocolError as exc:
            broker.stats["protocol_errors"] += 1
            logger.info("%r: protocol error: %s", self, exc.message, extra=self.log_context(reason=exc.message))
            if self.close_reason is None:
                self.close_reason = CloseReason.PROTOCOL_ERROR
        except Exception:
            logger.exception("%r: internal error", self, extra=self.log_context())
            if self.close_reason is None:
                self.close_reason = CloseReason.CONNECTION_LOST
        finally:
            try:
                await self._finish()
            finally:
                broker.connections.discard(self)
                if not self.done.done():
                    self.done.set_result(None)

    async def _serve(self) -> None:
        transport = self.transport
        loop = asyncio.get_running_loop()
        max_bytes = self.broker.settings.max_packet_bytes
        pending = b""
        while self.close_reason is None:
            data = await transport.read()
            if not data:
                return
            self.last_activity = loop.time()
            if pending:
                data = pending + data
            packets, used = decode(data, max_bytes)
            pending = data[used:] if used < len(data) else b""
            for packet in packets:
                if not await self._handle(packet) or self.close_reason is not None:
                    return
                if self._pressure:
                    # wait before the next message, not after the chunk: with many publishers a
                    # chunk each would overflow a congested subscriber before anyone waited
                    await self._relieve()
            if packets:
                # time spent in plugins is the broker's, not the client's silence
                self.last_activity = loop.time()
                # a read of buffered data does not suspend: yield, or one busy publisher
                # would hold the loop (and every other client, timer and flush) for its whole burst
                await asyncio.sleep(0)

    async def _handle(self, packet: Packet) -> bool:
        """Handle one packet; False ends the connection."""
        session = self.session
        if session is None:
            if not isinstance(packet, Connect):
                raise ProtocolError("first packet must be CONNECT")
            await self.broker.admission.turn()  # a CONNECT storm yields to established traffic
            if self.close_reason is not None:
                return False
            return await self._on_connect(packet)
        if self.fresh:
            # the last step of a handshake: a storm's first SUBSCRIBEs take turns as well
            self.fresh = False
            await self.broker.admission.turn()
            if self.close_reason is not None:
                return False
        match packet:
            case Publish():
                await self._on_publish(session, packet)
            case PubAck(packet_id):
                session.acknowledge(packet_id, 1)
            case PubComp(packet_id):
                session.acknowledge(packet_id, 2)
            case PubRec(packet_id):
                session.received(packet_id)
                self.write(encode_pubrel(packet_id))
            case PubRel(packet_id):
                session.inbound_qos2.discard(packet_id)
                self.write(encode_pubcomp(packet_id))
            case PingReq():
                self.write(PINGRESP_BYTES)
            case Subscribe():
                await self._on_subscribe(session, packet)
            case Unsubscribe():
                await self._on_unsubscribe(session, packet)
            case Disconnect():
                session.will_flag = False  # MQTT-3.14.4-3: a clean DISCONNECT discards the will
                self.close_reason = CloseReason.DISCONNECTED
                return False
            case _:
                raise ProtocolError(f"unexpected {type(packet).__name__} from a client")
        return True

    async def _relieve(self) -> None:
        """Wait (bounded) for subscribers this chunk filled up; block those that stay full."""
        pressured = list(self._pressure)
        self._pressure.clear()
        timeout = self.broker.drain_timeout_s
        self.paused = True
        try:
            for conn in pressured:
                if conn is self or conn.blocked or conn.close_reason is not None:
                    continue
                session = conn.session
                try:
                    if conn.transport.buffered() > HIGH_WATER:
                        await asyncio.wait_for(conn.transport.drain(), timeout)
                    if session is not None and session.congested:
                        # QoS 1/2: the in-flight window is full and a backlog grows; the
                        # publisher waits for PUBACKs instead of the backlog overflowing
                        await asyncio.wait_for(session.wait_room(), timeout)
                except TimeoutError:
                    conn.block()
                except (OSError, RuntimeError):
                    pass  # the subscriber went away; its own task cleans up
        finally:
            self.paused = False
            self.last_activity = asyncio.get_running_loop().time()

    def sweep(self, now: float) -> None:
        """Called periodically by the broker: timeouts and slow-subscriber recovery."""
        if self.close_reason is not None:
            return
        if self.session is None:
            if now > self.connect_deadline:
                self.abort(CloseReason.CONNECT_TIMEOUT)
            return
        if self.keepalive_limit and not self.paused and now - self.last_activity > self.keepalive_limit:
            self.abort(CloseReason.KEEPALIVE_TIMEOUT)
            return
        if self.session.overflowed:
            logger.warning("%r: dropped QoS 1/2 messages while connected: disconnecting", self)
            self.abort(CloseReason.SLOW_CONSUMER)
        elif self.blocked and self.transport.buffered() <= LOW_WATER:
            self.blocked = False
            self.session.pump()

    # ------------------------------------------------------------------------------- CONNECT

    def _refuse(self, code: int, why: str, client_id: str | None = None) -> bool:
        broker = self.broker
        broker.stats["connect_refused"] += 1
        broker.refused_by_code[code] = broker.refused_by_code.get(code, 0) + 1
        unlogged = broker.refusal_lines.admit(code, self.transport.remote_address, time.monotonic())
        if unlogged is not None:
            context = self.log_context(connack=code, reason=why)
            context.setdefault("client_id", client_id)
            if unlogged:
                context["unlogged"] = unlogged
                why = f"{why} ({unlogged} more locked-out refusals from this address not logged)"
            logger.info("%r: CONNECT refused (%#x): %s", self, code, why, extra=context)
        self.write(encode_connack(False, code))
        self.close_reason = CloseReason.CONNECT_REFUSED
        return False

    async def _on_connect(self, packet: Connect) -> bool:
        broker = self.broker
        if packet.will_topic is not None and not valid_topic_name(packet.will_topic):
            # MQTT-3.1.2-9/4.7.3-1: the will topic is a topic name, at least one character, no
            # wildcards; a CONNECT with anything else is malformed: closed without CONNACK
            raise ProtocolError(f"invalid will topic {packet.will_topic!r}")
        client_id = packet.client_id
        if not client_id:
            if not packet.clean_session:
                return self._refuse(ConnectRefused.IDENTIFIER_REJECTED, "empty client id with clean=0")
            client_id = "nxg-" + secrets.token_hex(8)
        session = broker.new_session(client_id)
        session.username = packet.username
        if packet.password is not None:
            session.password = packet.password.decode("utf-8", errors="surrogateescape")
        session.remote_address = self.transport.remote_address
        session.remote_port = self.transport.remote_port
        session.peer_cert = getattr(self.transport, "peer_cert", None)
        session.keep_alive = packet.keep_alive
        session.clean_session = packet.clean_session
        if packet.will_topic is not None:
            session.will_flag = True
            session.will_topic = packet.will_topic
            session.will_message = packet.will_message
            session.will_qos = packet.will_qos
            session.will_retain = packet.will_retain
        session.is_anonymous = packet.username is None
        code, why = await broker.hooks.authenticate(session, broker.settings.allow_anonymous)
        if code:
            return self._refuse(code, why, client_id)
        if self.close_reason is not None:
            return False
        principal = session.principal
        if principal is None:
            principal = session.principal = Principal.default(session.username)
        if session.receive_all:
            # the server's own link: a bound sized for a device would drop what apps wait for
            session.set_queue_limit(max(session.queue_limit, broker.settings.bridge_queue_limit))

        # A client id belongs to one principal while a session of it exists, connected or stored:
        # only a CONNECT that authenticated as the same principal takes it over (MQTT-3.1.4-2) or
        # resumes it. Anyone else is refused and leaves it untouched: a pairing session named
        # after a device's serial neither kicks that device nor reads its queued commands. The
        # one exception is a device's own serial: the device gets it back from whoever named a
        # session after it (closed and discarded, nothing carried over), or anyone holding a
        # valid code could keep any device offline.
        while True:
            existing = broker.sessions.get(client_id)
            if existing is None:
                break
            same = existing.principal == principal
            if not same and not principal.owns(client_id):
                return self._refuse(
                    ConnectRefused.IDENTIFIER_REJECTED, f"client id held by {existing.principal}", client_id
                )
            old = existing.conn
            if old is None or old is self:
                if same:
                    break
                broker.forget(existing)
                continue
            # takeover: the old connection finishes — disconnect event included — first
            if not same:
                logger.info("%r: device %s reclaims its client id from %s", self, client_id, existing.principal)
            elif not session.clean_session and not existing.clean_session:
                # the session goes on under the new connection: its client never went away, so
                # no will (a clean session on either side ends the old one, and its will goes out)
                existing.will_flag = False
            old.abort(CloseReason.TAKEN_OVER)
            await asyncio.shield(old.done)
            if self.close_reason is not None:
                return False
        # a plugin may force a clean session (pairing sessions are never stored)
        present = False
        if existing is not None and not session.clean_session and not existing.clean_session:
            existing.adopt(session)
            session = existing
            present = True
        else:
            if existing is not None:
                broker.forget(existing)
            broker.sessions[client_id] = session
        session.conn = self
        session.connected = True
        session.overflowed = False
        self.session = session
        self.keepalive_limit = 1.5 * session.keep_alive  # a plugin may have adjusted it
        self.write(encode_connack(present, 0))
        self.fresh = True
        broker.stats["connects"] += 1
        # what was owed before this connection goes first; the connected hook may publish more
        session.resend_inflight()
        session.pump()
        await broker.hooks.fire("on_broker_client_connected", client_id=client_id, client_session=session)
        return True

    # ------------------------------------------------------------------------------- PUBLISH

    async def _on_publish(self, session: BrokerSession, packet: Publish) -> None:
        broker = self.broker
        broker.stats["messages_in"] += 1
        qos = packet.qos
        packet_id = packet.packet_id or 0
        if qos == 2 and packet_id in session.inbound_qos2:
            self._acknowledge(encode_pubrec(packet_id), None)  # a retransmission: routed already
            return
        topic = packet.topic
        if not valid_topic_name(topic):
            raise ProtocolError(f"invalid topic name in PUBLISH: {topic!r}")
        hooks = broker.hooks
        message = IncomingMessage(topic, packet.payload, qos, packet.retain)
        if hooks.events["on_broker_message_received"]:
            await hooks.fire("on_broker_message_received", client_id=session.client_id, message=message)
        if topic.startswith("$") or (hooks.topic_filters and not await hooks.allowed(session, topic, Action.PUBLISH)):
            broker.stats["publish_denied"] += 1
        elif hooks.validators and not await hooks.validate(session, message):
            broker.stats["publish_invalid"] += 1
        else:
            if qos and message.durable is None:
                # nothing to wait for: the acknowledgement is queued ahead of the onward copies, so
                # on the publisher's own socket PUBACK/PUBREC come before the copy its own
                # subscription gets (Mosquitto's order). Writes are corked until the end of this
                # loop pass, so the copies are still in their buffers before the ack is sent.
                self._ack_publish(session, qos, packet_id, None)
                qos_acked = True
            else:
                qos_acked = False
            await broker.route(topic, message.data, qos, packet.retain, pressure=self)
            if hooks.events["on_broker_message_broadcast"]:
                await hooks.fire("on_broker_message_broadcast", client_id=session.client_id, message=message)
            if qos_acked:
                return
        if qos:
            self._ack_publish(session, qos, packet_id, message.durable)

    def _ack_publish(
        self, session: BrokerSession, qos: int, packet_id: int, durable: asyncio.Future[None] | None
    ) -> None:
        if qos == 1:
            self._acknowledge(encode_puback(packet_id), durable)
        else:
            session.inbound_qos2.add(packet_id)
            self._acknowledge(encode_pubrec(packet_id), durable)

    def _acknowledge(self, ack: bytes, durable: asyncio.Future[None] | None) -> None:
        """Write a PUBACK/PUBREC once its message is durable (`durable` resolved: the batch that
        stores it committed), in the order the PUBLISHes came (MQTT-4.6.0-2): behind any still
        waiting. The read loop goes on meanwhile; a whole batch window's acks leave together."""
        acks = self._acks
        if durable is None and not acks:
            self.write(ack)
            return
        acks.append((durable, ack))
        if durable is not None and (len(acks) == 1 or acks[-2][0] is not durable):
            durable.add_done_callback(self._write_acks)

    def _write_acks(self, _: object = None) -> None:
        acks = self._acks
        ready: list[bytes] = []
        while acks:
            durable, ack = acks[0]
            if durable is not None:
                if not durable.done():
                    break
                if durable.cancelled() or durable.exception() is not None:
                    # not stored: no acknowledgement; closing makes the client send it again
                    acks.clear()
                    logger.warning("%r: storing its messages failed: closing without PUBACK", self)
                    self.abort(CloseReason.STORE_FAILED)
                    return
            acks.popleft()
            ready.append(ack)
        if ready and self.close_reason is None:
            self.write(b"".join(ready))

    # ----------------------------------------------------------------------------- SUBSCRIBE

    async def _on_subscribe(self, session: BrokerSession, packet: Subscribe) -> None:
        broker = self.broker
        hooks = broker.hooks
        codes: list[int] = []
        granted: list[tuple[str, int]] = []
        for topic_filter, qos in packet.topics:
            if (
                not valid_topic_filter(topic_filter)
                or topic_filter.startswith("$share/")
                or (hooks.topic_filters and not await hooks.allowed(session, topic_filter, Action.SUBSCRIBE))
            ):
                broker.stats["subscribe_denied"] += 1
                codes.append(SUBACK_FAILURE)
                continue
            if session.conn is not self:
                return  # taken over while a plugin was deciding
            broker.subscribe(session, topic_filter, qos)
            codes.append(qos)
            granted.append((topic_filter, qos))
        self.write(encode_suback(packet.packet_id, codes))
        if granted:
            await broker.deliver_retained(session, granted)
        for topic_filter, qos in granted:
            await hooks.fire("on_broker_client_subscribed", client_id=session.client_id, topic=topic_filter, qos=qos)

    async def _on_unsubscribe(self, session: BrokerSession, packet: Unsubscribe) -> None:
        broker = self.broker
        removed = [topic_filter for topic_filter in packet.topics if broker.unsubscribe(session, topic_filter)]
        self.write(encode_unsuback(packet.packet_id))
        for topic_filter in removed:
            await broker.hooks.fire("on_broker_client_unsubscribed", client_id=session.client_id, topic=topic_filter)

    # --------------------------------------------------------------------------------- close

    async def _finish(self) -> None:
        reason = self.close_reason or CloseReason.CONNECTION_LOST
        self.close_reason = reason
        broker = self.broker
        session = self.session
        closing = asyncio.get_running_loop().create_task(self.transport.close())
        try:
            if session is None or session.conn is not self:
                return
            session.conn = None
            session.connected = False
            session.disconnect_reason = reason
            session.release_waiters()  # publishers waiting for this subscriber go on
            self.blocked = False
            if session.will_flag and reason not in NO_WILL:
                await broker.publish_will(session)
            if session.clean_session:
                broker.forget(session)
            await broker.hooks.fire(
                "on_broker_client_disconnected", client_id=session.client_id, client_session=session
            )
        finally:
            await closing
