"""The bridge's one MQTT link: a small asyncio MQTT 3.1.1 client that reconnects on its own.

    link = MqttLink(host, port, password=settings.internal_secret, on_message=hub.on_mqtt)
    await link.start()               # returns at once; connects (and reconnects) in the background
    await link.publish("nxg/S1/telemetry", b'{"temp":1}', qos=1)   # waits for the PUBACK
    await link.close()

It logs in as `bridge` (every topic allowed), subscribes to `nxg/#` at QoS 1 (or what it is given;
nothing at all beside the embedded broker, which hands the hub its messages in-process) and hands every
PUBLISH to `on_message(topic, payload, retain)` synchronously, on the reader's turn of the event
loop: the hub only enqueues, so one read of 64 KiB turns into many deliveries without a task per
message, and the PUBACKs of a whole read go out in one write. It reuses the broker's codec.

A publish while the link is down raises `LinkDown` (HTTP 502, `GATEWAY_ERROR`): callers answer
their client with an error instead of pretending the message went out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Callable

from nxg_mqtt.errors import GatewayError
from nxg_mqtt.mqtt import codec

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes, bool], None]
WRITE_HIGH_WATER = 1024 * 1024  # bytes buffered towards the broker before publishers wait
READ_CHUNK = 256 * 1024


class LinkDown(GatewayError):
    """The broker is not reachable or not answering: PROTOCOL §6's 502 `GATEWAY_ERROR`."""


class MqttLink:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        password: str,
        on_message: MessageHandler,
        username: str = "bridge",
        client_id: str | None = None,
        clean_session: bool = True,
        subscriptions: tuple[tuple[str, int], ...] = (("nxg/#", 1),),
        keepalive_s: int = 30,
        ack_timeout_s: float = 10.0,
        backoff_s: tuple[float, float] = (0.05, 5.0),
        on_up: Callable[[], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._username = username
        self._password = password
        self._client_id = client_id or "nxg-bridge-" + secrets.token_hex(4)
        # False: the broker keeps the session (subscriptions, unacknowledged messages) across a
        # reconnect or a restart under the same client id (the serving processes' ingest link)
        self._clean_session = clean_session
        self._subscriptions = subscriptions
        self._on_message = on_message
        self._keepalive_s = keepalive_s
        self._ack_timeout_s = ack_timeout_s
        self._backoff_s = backoff_s
        self._on_up = on_up  # each time the subscriptions are acknowledged (connected again)
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._next_id = 0
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.connects = 0
        self.received = 0
        self.handler_errors = 0

    # ---- lifecycle ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="nxg-bridge-link")

    async def wait_connected(self, within_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), within_s)
        return self.connected

    async def close(self) -> None:
        self._closing = True
        writer = self._writer
        if writer is not None and not writer.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                writer.write(codec.DISCONNECT_BYTES)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # ---- publishing -----------------------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> int:
        """Send one message; QoS 1 returns once the broker acknowledged it. Returns 1."""
        writer = self._writer
        if writer is None or not self.connected or writer.is_closing():
            raise LinkDown("the MQTT broker is not reachable")
        if qos == 0:
            writer.write(codec.encode_publish(topic, payload, 0, retain))
            await self._maybe_drain(writer)
            return 1
        packet_id = self._new_packet_id()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[packet_id] = done
        try:
            writer.write(codec.encode_publish(topic, payload, 1, retain, packet_id=packet_id))
            await self._maybe_drain(writer)
            await asyncio.wait_for(asyncio.shield(done), self._ack_timeout_s)
        except TimeoutError:
            raise LinkDown("the MQTT broker did not acknowledge in time") from None
        finally:
            self._pending.pop(packet_id, None)
        return 1

    def _new_packet_id(self) -> int:
        for _ in range(65535):
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self._pending:
                return self._next_id
        raise LinkDown("too many unacknowledged publishes")

    @staticmethod
    async def _maybe_drain(writer: asyncio.StreamWriter) -> None:
        if writer.transport.get_write_buffer_size() > WRITE_HIGH_WATER:
            await writer.drain()

    # ---- the connection loop --------------------------------------------------------------------

    async def _run(self) -> None:
        low, high = self._backoff_s
        delay = low
        while not self._closing:
            try:
                await self._session()
                delay = low
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, EOFError, codec.ProtocolError, LinkDown) as exc:
                if not self._closing:
                    log.warning("MQTT link to %s:%d: %s; retrying in %.2fs", self.host, self.port, exc, delay)
            except Exception:
                log.exception("MQTT link failed; retrying in %.2fs", delay)
            finally:
                self._lost()
            if self._closing:
                return
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(high, delay * 2)

    def _lost(self) -> None:
        self._connected.clear()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(LinkDown("the MQTT link was lost"))
        self._pending.clear()

    async def _session(self) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 10)
        self._writer = writer
        connect = codec.Connect(
            client_id=self._client_id,
            clean_session=self._clean_session,
            keep_alive=self._keepalive_s,
            username=self._username,
            password=self._password.encode(),
        )
        writer.write(codec.encode_connect(connect))
        buffer = bytearray()
        packets = await asyncio.wait_for(self._read_packets(reader, buffer), 10)
        first = packets.pop(0)
        if not isinstance(first, codec.Connack):
            raise codec.ProtocolError(f"expected CONNACK, got {type(first).__name__}")
        if first.return_code != 0:
            raise LinkDown(f"broker refused the bridge (CONNACK {first.return_code})")
        if self._subscriptions:
            writer.write(codec.encode_subscribe(self._new_packet_id(), list(self._subscriptions)))
        else:
            self._up()  # publishing only: up once the broker accepted the login
        pinger = asyncio.create_task(self._ping(writer))
        try:
            self._handle(packets, writer)
            while True:
                packets = await asyncio.wait_for(self._read_packets(reader, buffer), self._keepalive_s * 1.5 + 1)
                self._handle(packets, writer)
        finally:
            pinger.cancel()

    async def _read_packets(self, reader: asyncio.StreamReader, buffer: bytearray) -> list[codec.Packet]:
        while True:
            chunk = await reader.read(READ_CHUNK)
            if not chunk:
                raise EOFError("the broker closed the connection")
            buffer += chunk
            packets, used = codec.decode(buffer)
            if used:
                del buffer[:used]
            if packets:
                return packets

    async def _ping(self, writer: asyncio.StreamWriter) -> None:
        while True:
            await asyncio.sleep(self._keepalive_s / 2)
            writer.write(codec.PINGREQ_BYTES)

    def _up(self) -> None:
        self.connects += 1
        self._connected.set()
        log.info("MQTT link up: %s:%d", self.host, self.port)
        if self._on_up is not None:
            self._on_up()

    def _handle(self, packets: list[codec.Packet], writer: asyncio.StreamWriter) -> None:
        acks: list[bytes] = []
        for packet in packets:
            if isinstance(packet, codec.Publish):
                if packet.qos == 1 and packet.packet_id is not None:
                    acks.append(codec.encode_puback(packet.packet_id))
                self.received += 1
                try:
                    self._on_message(packet.topic, packet.payload, packet.retain)
                except Exception:
                    self.handler_errors += 1
                    log.exception("handling %s failed", packet.topic)
            elif isinstance(packet, codec.PubAck):
                future = self._pending.pop(packet.packet_id, None)
                if future is not None and not future.done():
                    future.set_result(None)
            elif isinstance(packet, codec.SubAck):
                if any(code == codec.SUBACK_FAILURE for code in packet.return_codes):
                    raise LinkDown("the broker refused the bridge's subscription")
                self._up()
            elif isinstance(packet, codec.Connack):
                raise codec.ProtocolError("unexpected CONNACK")
        if acks:
            writer.write(b"".join(acks))
