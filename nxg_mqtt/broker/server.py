"""NxgBroker: listeners, sessions, routing and the public API, as one async context manager.

    async with NxgBroker(settings, [MyAuthPlugin, MyAclPlugin]) as broker:
        await broker.publish("nxg/S1/cmd", b"{}", qos=1)

Plugins are built from factories taking a `BrokerContext` and follow amqtt's plugin contract
(hook names, `Action`), see `hooks.py`. Routing happens inline on the publisher's connection:
`route()` writes into subscriber buffers (or their bounded queues) before the PUBACK goes out.

In-process subscribers (`attach`): the bridge in the broker's process (`nxg-mqtt serve`) takes its
hub's messages straight from `route()` — a plain call, no MQTT encoding, no loopback socket, no
PUBACK to wait for — instead of through its MQTT link. They have the bridge role (every topic, no
RECEIVE check, as `bridge` logs in), get live messages with retain 0 and, when attached, the
retained messages their filters match with retain 1, as a SUBSCRIBE would. A message reaches them
on the publisher's turn, after the ACL and the validators and after the sessions: in each
publisher's order, and what a validator commits first (an ack closing its command) is committed
before they hear it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from amqtt.contexts import Action, BaseContext
from amqtt.plugins.base import BasePlugin
from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from nxg_mqtt import tls
from nxg_mqtt.broker.admission import HandshakeGate
from nxg_mqtt.broker.connection import Connection
from nxg_mqtt.broker.hooks import PluginHost
from nxg_mqtt.broker.message import IncomingMessage, OutgoingMessage
from nxg_mqtt.broker.refusals import RefusalLines
from nxg_mqtt.broker.router import Router
from nxg_mqtt.broker.session import BrokerSession
from nxg_mqtt.broker.transport import HIGH_WATER, TcpTransport, WebSocketTransport
from nxg_mqtt.metrics import ChannelCounts
from nxg_mqtt.mqtt.codec import encode_topic
from nxg_mqtt.protocol import CloseReason
from nxg_mqtt.settings import Settings
from nxg_mqtt.topics import matches, valid_topic_filter, valid_topic_name

SWEEP_INTERVAL_S = 0.5
STAT_KEYS = (
    "connects",
    "connect_refused",
    "messages_in",
    "messages_out",
    "dropped_qos0",
    "dropped_qos1",
    "publish_denied",
    "publish_invalid",
    "subscribe_denied",
    "receive_denied",
    "protocol_errors",
    "plugin_errors",
)


class BrokerContext(BaseContext):  # type: ignore[misc]
    """What a plugin receives: amqtt's BaseContext plus the NXG broker and settings."""

    def __init__(self, broker: NxgBroker, settings: Settings, logger: logging.Logger) -> None:
        super().__init__()
        self.loop = asyncio.get_running_loop()
        self.broker = broker
        self.settings = settings
        self.logger = logger
        self.config = None

    async def broadcast_message(self, topic: str, data: bytes, qos: int | None = None) -> None:
        """amqtt's BrokerContext method, for plugins written against it."""
        await self.broker.publish(topic, data, qos=qos or 0)

    def get_session(self, client_id: str) -> BrokerSession | None:
        return self.broker.session(client_id)


PluginFactory = Callable[[BrokerContext], BasePlugin[Any]]
LocalHandler = Callable[[str, bytes, bool], None]  # (topic, payload, retain), called synchronously


class _Local:
    """One `attach`: the router's key, so the same handler attached twice is two subscribers."""

    __slots__ = ("handler",)

    def __init__(self, handler: LocalHandler) -> None:
        self.handler = handler


@dataclass(frozen=True, slots=True)
class RetainedMessage:
    topic: str
    data: bytes
    qos: int


class NxgBroker:
    def __init__(
        self,
        settings: Settings,
        plugin_factories: Sequence[PluginFactory] = (),
        *,
        drain_timeout_s: float = 2.0,
        logger: logging.Logger | None = None,
    ) -> None:
        self.settings = settings
        self.logger = logger or logging.getLogger("nxg_mqtt.broker")
        self.drain_timeout_s = drain_timeout_s
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self.refused_by_code: dict[int, int] = {}  # CONNACK return code → CONNECTs refused with it
        # deliveries by channel (GET /metrics), None with metrics off; the ingest plugin counts received
        self.by_channel_out = ChannelCounts() if settings.metrics else None
        self.by_channel_in = ChannelCounts() if settings.metrics else None
        self.sessions: dict[str, BrokerSession] = {}
        self.connections: set[Connection] = set()
        self.router: Router[BrokerSession] = Router()
        self.local: Router[_Local] = Router()  # in-process subscribers (`attach`)
        self._locals = 0  # filters in `local`: route() skips the lookup while there are none
        self.retained: dict[str, RetainedMessage] = {}
        self.hooks = PluginHost([], self.logger, self.stats)
        self.admission = HandshakeGate()
        self.refusal_lines = RefusalLines()  # locked-out addresses: a line per interval, not per CONNECT
        self._factories = list(plugin_factories)
        self._tcp: asyncio.Server | None = None
        self._ws: WsServer | None = None
        self._mqtts: asyncio.Server | None = None
        self._wss: WsServer | None = None
        self.tls_context: ssl.SSLContext | None = None  # shared by the TLS listeners; reload_tls() refreshes it
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # TCP connections' read loops
        self._closed = False

    # ----------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> NxgBroker:
        plugins = [factory(BrokerContext(self, self.settings, self.logger)) for factory in self._factories]
        self.hooks = PluginHost(plugins, self.logger, self.stats)
        await self.hooks.fire("on_broker_pre_start")
        settings = self.settings
        try:
            # with TLS and no plain listeners, plain MQTT stays on loopback only: the bridge's own link
            plain_host = settings.host if settings.plain or not settings.tls else "127.0.0.1"
            loop = asyncio.get_running_loop()
            self._tcp = await loop.create_server(self._tcp_protocol, plain_host, settings.mqtt_port, reuse_address=True)
            ws_options: dict[str, Any] = {
                "subprotocols": [Subprotocol("mqtt")],
                "max_size": settings.max_packet_bytes + 1024,
                "compression": None,
                "ping_interval": None,
            }
            if settings.ws_port is not None and (settings.plain or not settings.tls):
                self._ws = await serve(self._on_ws, settings.host, settings.ws_port, **ws_options)
            if settings.tls:
                self.tls_context = tls.server_context(settings)
                self._mqtts = await loop.create_server(
                    self._tcp_protocol, settings.host, settings.mqtts_port, ssl=self.tls_context, reuse_address=True
                )
                if settings.wss_port is not None:
                    self._wss = await serve(
                        self._on_ws, settings.host, settings.wss_port, ssl=self.tls_context, **ws_options
                    )
        except BaseException:
            await self._stop_listeners()
            raise
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())
        await self.hooks.fire("on_broker_post_start")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.hooks.fire("on_broker_pre_shutdown")
        if self._tcp is not None:
            self._tcp.close()
        if self._ws is not None:
            self._ws.close(close_connections=False)
        connections = list(self.connections)
        for conn in connections:
            conn.abort(CloseReason.SERVER_SHUTDOWN)
        if connections:
            await asyncio.gather(*(asyncio.shield(conn.done) for conn in connections))
        await self._stop_listeners()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.hooks.close()
        await self.hooks.fire("on_broker_post_shutdown")

    def reload_tls(self) -> None:
        """New TLS handshakes use the certificate on disk now; connected clients are left alone."""
        if self.tls_context is not None:
            tls.reload(self.tls_context, self.settings)

    @property
    def mqtts_port(self) -> int | None:
        return int(self._mqtts.sockets[0].getsockname()[1]) if self._mqtts is not None else None

    @property
    def wss_port(self) -> int | None:
        return int(next(iter(self._wss.sockets)).getsockname()[1]) if self._wss is not None else None

    async def _stop_listeners(self) -> None:
        for server in (self._mqtts, self._wss):
            if server is not None:
                server.close()
                await server.wait_closed()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        if self._ws is not None:
            self._ws.close()
            await self._ws.wait_closed()

    @property
    def mqtt_port(self) -> int:
        if self._tcp is None or not self._tcp.sockets:
            raise RuntimeError("broker not started")
        return int(self._tcp.sockets[0].getsockname()[1])

    @property
    def ws_port(self) -> int | None:
        if self._ws is None:
            return None
        return int(next(iter(self._ws.sockets)).getsockname()[1])

    def _tcp_protocol(self) -> TcpTransport:
        return TcpTransport(self._on_tcp)

    def _on_tcp(self, transport: TcpTransport) -> None:
        task = asyncio.get_running_loop().create_task(Connection(self, transport).run())
        self._tasks.add(task)  # a task only the loop refers to may be collected mid-run
        task.add_done_callback(self._tasks.discard)

    async def _on_ws(self, ws: ServerConnection) -> None:
        await Connection(self, WebSocketTransport(ws)).run()

    async def _sweep_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now = loop.time()
            for conn in tuple(self.connections):
                # the common case inline: a connected, unblocked client heard from recently
                limit = conn.keepalive_limit
                session = conn.session
                if (
                    session is not None
                    and not conn.blocked
                    and not session.overflowed
                    and (not limit or now - conn.last_activity <= limit)
                ):
                    continue
                try:
                    conn.sweep(now)
                except Exception:
                    self.logger.exception("sweep failed for %r", conn)

    # ------------------------------------------------------------------------------ sessions

    def new_session(self, client_id: str) -> BrokerSession:
        return BrokerSession(client_id, queue_limit=self.settings.session_queue_limit, stats=self.stats)

    def forget(self, session: BrokerSession) -> None:
        """Drop a session's subscriptions and state (clean session, or replaced by clean=1)."""
        for topic_filter in session.subscriptions:
            self.router.remove(topic_filter, session)
        session.discard_state()
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]

    def subscribe(self, session: BrokerSession, topic_filter: str, qos: int) -> None:
        self.router.add(topic_filter, session, qos)
        session.subscriptions[topic_filter] = qos

    def unsubscribe(self, session: BrokerSession, topic_filter: str) -> bool:
        if session.subscriptions.pop(topic_filter, None) is None:
            return False
        self.router.remove(topic_filter, session)
        return True

    # ------------------------------------------------------------------------------- routing

    async def route(
        self, topic: str, data: bytes, qos: int, retain: bool, *, pressure: Connection | None = None
    ) -> int:
        """Store/clear the retained message and deliver to every matching session; the count."""
        if retain:
            if data:
                self.retained[topic] = RetainedMessage(topic, data, qos)
            else:
                self.retained.pop(topic, None)
        targets = self.router.match(topic)
        if not targets:
            return self._deliver_local(topic, data) if self._locals else 0
        hooks = self.hooks
        check = bool(hooks.topic_filters)
        topic_bytes = encode_topic(topic)
        by_qos: list[OutgoingMessage | None] = [None, None, None]
        count = 0
        for session, granted in targets.items():
            if check and not session.receive_all and not await hooks.allowed(session, topic, Action.RECEIVE):
                self.stats["receive_denied"] += 1
                continue
            conn = session.conn
            if conn is None and session.clean_session:
                continue  # went away while a plugin was deciding
            effective = granted if granted < qos else qos
            message = by_qos[effective]
            if message is None:
                message = by_qos[effective] = OutgoingMessage(topic, data, effective, False, topic_bytes)
            if session.deliver(message):
                count += 1
            if (
                pressure is not None
                and conn is not None
                and (conn.transport.buffered() > HIGH_WATER or session.congested)
            ):
                pressure.note_pressure(conn)
        self.stats["messages_out"] += count
        if self.by_channel_out is not None:
            self.by_channel_out.add(topic, count)
        if self._locals:
            count += self._deliver_local(topic, data)
        return count

    def _deliver_local(self, topic: str, data: bytes) -> int:
        handlers = self.local.match(topic)
        for local in handlers:
            try:
                local.handler(topic, data, False)
            except Exception:  # one subscriber's failure is its own: routing and the others go on
                self.logger.exception("in-process subscriber failed on %s", topic)
        count = len(handlers)
        if count:
            self.stats["messages_out"] += count
            if self.by_channel_out is not None:
                self.by_channel_out.add(topic, count)
        return count

    def attach(self, filters: Sequence[str], handler: LocalHandler) -> Callable[[], None]:
        """Subscribe `handler(topic, payload, retain)` in-process to `filters` (see the module
        docstring); the retained messages they match are handed over first. Returns the detach."""
        filters = tuple(dict.fromkeys(filters))
        for topic_filter in filters:
            if not valid_topic_filter(topic_filter):
                raise ValueError(f"invalid topic filter: {topic_filter!r}")
        for topic, retained in list(self.retained.items()):
            if any(matches(topic_filter, topic) for topic_filter in filters):
                handler(topic, retained.data, True)
        local = _Local(handler)
        for topic_filter in filters:
            self.local.add(topic_filter, local, 1)
            self._locals += 1
        attached = True

        def detach() -> None:
            nonlocal attached
            if attached:
                attached = False
                for topic_filter in filters:
                    if self.local.remove(topic_filter, local):
                        self._locals -= 1

        return detach

    async def deliver_retained(self, session: BrokerSession, granted: Sequence[tuple[str, int]]) -> None:
        """Retained messages for filters `session` just subscribed to, to `session` only."""
        if not self.retained:
            return
        best: dict[str, int] = {}
        for topic_filter, qos in granted:
            if "+" in topic_filter or "#" in topic_filter:
                topics = [topic for topic in self.retained if matches(topic_filter, topic)]
            else:
                topics = [topic_filter] if topic_filter in self.retained else []
            for topic in topics:
                if best.get(topic, -1) < qos:
                    best[topic] = qos
        hooks = self.hooks
        check = bool(hooks.topic_filters) and not session.receive_all
        for topic, qos in best.items():
            if check and not await hooks.allowed(session, topic, Action.RECEIVE):
                self.stats["receive_denied"] += 1
                continue
            retained = self.retained.get(topic)
            if retained is None or session.conn is None:
                continue
            if session.deliver(OutgoingMessage(topic, retained.data, min(qos, retained.qos), True)):
                self.stats["messages_out"] += 1

    async def publish_will(self, session: BrokerSession) -> None:
        topic = session.will_topic
        if not topic or not valid_topic_name(topic) or topic.startswith("$"):
            return
        hooks = self.hooks
        if hooks.topic_filters and not await hooks.allowed(session, topic, Action.PUBLISH):
            self.stats["publish_denied"] += 1
            return
        data = session.will_message or b""
        message = IncomingMessage(topic, data, session.will_qos, session.will_retain)
        if hooks.validators and not await hooks.validate(session, message):
            self.stats["publish_invalid"] += 1
            return
        await self.route(topic, message.data, session.will_qos, session.will_retain)

    # ---------------------------------------------------------------------------- public API

    async def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> int:
        """Server-side publish: no PUBLISH ACL, RECEIVE ACL applies; the sessions reached."""
        if not valid_topic_name(topic):
            raise ValueError(f"invalid topic name: {topic!r}")
        if qos not in (0, 1, 2):
            raise ValueError(f"invalid QoS: {qos}")
        return await self.route(topic, bytes(payload), qos, retain)

    def wanted(self, topic: str) -> bool:
        """Whether a message on `topic` would reach anyone now: a session (any state; the RECEIVE
        ACL is not asked) or an in-process subscriber. For callers that can skip encoding it."""
        return bool(self.router.match(topic)) or (self._locals > 0 and bool(self.local.match(topic)))

    def has_subscription(self, client_id: str, topic: str) -> bool:
        session = self.sessions.get(client_id)
        if session is None or not session.connected:
            return False
        return any(matches(topic_filter, topic) for topic_filter in session.subscriptions)

    async def kick(self, client_id: str, reason: str = CloseReason.KICKED) -> bool:
        """Close `client_id`'s connection now; returns once its disconnect event has fired."""
        session = self.sessions.get(client_id)
        conn = session.conn if session is not None else None
        if conn is None:
            return False
        conn.abort(reason)
        await asyncio.shield(conn.done)
        return True

    def session(self, client_id: str) -> BrokerSession | None:
        return self.sessions.get(client_id)

    @property
    def connected_count(self) -> int:
        return sum(1 for conn in self.connections if conn.session is not None and conn.session.conn is conn)
