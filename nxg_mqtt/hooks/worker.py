"""The serving process as an MQTT client of a foreign broker (the `bridge` role): what the
embedded broker's message plugins do, done on messages taken from shared subscriptions.

    worker = MqttWorker(core, hooks, "127.0.0.1", 1883)
    await worker.start()
    core.outbox.connect(worker.link)      # presence, commands, kicks go out through it
    ...
    await worker.close()

Subscribed as `$share/nxg/<filter>`: several serving processes on one broker split the traffic,
each message goes to one of them. Telemetry, status and events are validated and stored (a bad
payload: dropped and recorded as a Warning event, by the ingest service); manifests, acks,
command requests and pairing requests are handed to the same services the plugins call.

The one `ts` (PROTOCOL §6): Mosquitto's plugin appends the receive time to device data
(`,"server_ts":<ms>}`, `plugin_opt_stamp_topics`); the worker takes it off again (`unstamp`) and
stores the message with that ts, while the bridge and keys see it in the payload, exactly as the
embedded broker's ingest stamps what it routes. A broker that does not stamp: the worker's clock.

Durability: a QoS 1 message is acknowledged to the broker only once the history batch holding it
has committed (or once its handler finished), and the worker's session is persistent
(clean_session 0) under a client id that is stable per serving process: `nxg-worker-<n>`, n the
lowest slot of the data directory's `workers/` whose lock file no living process holds (an
exclusive flock, released by the kernel when a process dies). Two processes on one data store get
two ids; a process restarted after a crash or a SIGKILL takes the freed slot and resumes that
session. So Mosquitto keeps what a killed process had in flight, and what the shared
subscription goes on handing to its session meanwhile (Mosquitto 2.0 deals every group member
its share, connected or not), and delivers it when the process comes back. What was committed
but not yet acknowledged comes back with DUP set; it is written only if the store holds no row
with the same serial, type, broker stamp and body (`HistoryEntry.redelivered`), so nothing is
stored twice. Measured in tests/mosquitto/test_scale_out.py. A process that never comes back
strands its session's messages: up to `max_queued_messages` beyond the in-flight window, until
an operator starts a process on that data store again (it takes the free slot).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import itertools
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from bridge.link import MqttLink
from nxg_mqtt.core import Core
from nxg_mqtt.errors import NxgError, PayloadRejected
from nxg_mqtt.hooks.service import REPORT_TOPICS, SUBSCRIBED_TOPIC, HookService
from nxg_mqtt.mqtt import codec
from nxg_mqtt.protocol import DEVICE_DATA, SERVER_TS, Role
from nxg_mqtt.services.command_requests import handle_command_request
from nxg_mqtt.services.pairing import answer_pair_request
from nxg_mqtt.topics import Channel, pair_reply_topic, parse_device_topic, parse_pair_request

log = logging.getLogger(__name__)

SHARE_GROUP = "nxg"
# Mosquitto sends a session at most `max_inflight_messages` (1000 in mosquitto.conf) unacknowledged
# QoS 1 messages, and the worker acknowledges only once their batch is committed: waiting out the
# batch window with half the window taken bounded the store at ~1000 per window plus one write
# (~14,000 msg/s quiet, ~3,000 on a busy machine where the timer fires late) while the serving
# process sat at 20-25 % of a core. At this many the batch commits at once.
COMMIT_AT_UNACKED = 500
WORKER_ID_PREFIX = "nxg-worker-"  # + the process's slot (`claim_slot`)
FILTERS = (
    "nxg/+/telemetry",
    "nxg/+/status",
    "nxg/+/event",
    "nxg/+/manifest",
    "nxg/+/ack",
    "nxg/+/cmd/req",
    "nxg/pair/+/req",
)


class _AckLaterLink(MqttLink):
    """The bridge's link, with QoS 1 PUBACKs left to the worker (sent once the work is durable)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        password: str,
        worker: MqttWorker,
        client_id: str,
        reports: bool,
        on_up: Callable[[], None] | None,
    ) -> None:
        # the plugin's connect/disconnect/refusal reports: for the one process whose hooks it calls
        reported = tuple((topic, 1) for topic in REPORT_TOPICS) if reports else ()
        super().__init__(
            host,
            port,
            password=password,
            on_message=lambda *_: None,
            client_id=client_id,
            clean_session=False,
            # + the subscriptions the plugin allowed from its cache (HookService.subscribed), not
            # shared: Mosquitto 2.0 deals a broker-published `$` message to no shared subscriber;
            # only the process that holds the device's presence acts on it (`subscribed_commands`)
            subscriptions=(*((f"$share/{SHARE_GROUP}/{f}", 1) for f in FILTERS), (SUBSCRIBED_TOPIC, 1), *reported),
            on_up=on_up,
        )
        self._worker = worker

    def _handle(self, packets: list[codec.Packet], writer: asyncio.StreamWriter) -> None:
        rest: list[codec.Packet] = []
        reports: list[codec.Publish] = []
        for packet in packets:
            if isinstance(packet, codec.Publish):
                self.received += 1
                if packet.topic in REPORT_TOPICS:
                    reports.append(packet)  # in order among themselves; nothing else depends on them
                else:
                    self._worker.on_publish(packet, writer)
            else:
                rest.append(packet)
        if reports:
            self._worker.on_reports(reports, writer)
        super()._handle(rest, writer)


class MqttWorker:
    def __init__(self, core: Core, hooks: HookService | None, host: str, port: int, *, reports: bool = False) -> None:
        self.core = core
        self.hooks = hooks
        self.slot, self._slot_fd = claim_slot(core.settings.data_dir / "workers")
        self.client_id = f"{WORKER_ID_PREFIX}{self.slot}"
        self.link: MqttLink = _AckLaterLink(
            host,
            port,
            password=core.settings.internal_secret,
            worker=self,
            client_id=self.client_id,
            reports=reports and hooks is not None,
            # every connect of the link: the plugin's credential table gets a full snapshot
            on_up=hooks.credentials.link_up if hooks is not None else None,
        )
        if hooks is not None:
            hooks.credentials.attach(self.link)
        self._queue: asyncio.Queue[tuple[codec.Publish, asyncio.StreamWriter]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.stored = 0
        self.rejected = 0
        self._batch: asyncio.Future[None] | None = None  # the history batch now filling
        self._batch_acks: list[tuple[int, asyncio.StreamWriter]] = []

    async def start(self, within_s: float = 5.0) -> None:
        self._task = asyncio.get_running_loop().create_task(self._consume(), name="nxg-worker")
        await self.link.start()
        await self.link.wait_connected(within_s)

    async def close(self) -> None:
        await self.core.ingest.flush()
        await self.link.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._slot_fd >= 0:
            os.close(self._slot_fd)  # the slot (and the broker session) is free for the next process
            self._slot_fd = -1

    # ---- receiving ------------------------------------------------------------------------------

    def on_reports(self, packets: list[codec.Publish], writer: asyncio.StreamWriter) -> None:
        """The plugin's connect/disconnect reports of one read, taken together on the reader's turn
        (the state at once, the presence work as one queued batch: `HookService.reported_many`),
        acknowledged in one write."""
        reports: list[tuple[str, dict[str, object]]] = []
        for packet in packets:
            with contextlib.suppress(ValueError):
                report = json.loads(packet.payload)
                if isinstance(report, dict):
                    reports.append((packet.topic, report))
        if self.hooks is not None and reports:
            self.hooks.reported_many(reports)
        acks = [codec.encode_puback(p.packet_id) for p in packets if p.qos == 1 and p.packet_id is not None]
        if acks and not writer.is_closing():
            writer.write(b"".join(acks))

    def on_publish(self, packet: codec.Publish, writer: asyncio.StreamWriter) -> None:
        """Device data is taken on the reader's turn (no task per message); the rest is queued."""
        parsed = parse_device_topic(packet.topic)
        if parsed is not None and parsed.channel in DEVICE_DATA:
            raw, ts = unstamp(packet.payload)
            if parsed.channel is Channel.EVENT and _published_by_the_core(raw):
                _ack(packet, writer)
                return
            try:
                self.core.ingest.accept(parsed.serial, parsed.channel, raw, ts, redelivered=packet.dup)
            except PayloadRejected:
                self.rejected += 1
                _ack(packet, writer)
                return
            self.stored += 1
            durable = self.core.ingest.committed()
            if durable is None or packet.qos == 0 or packet.packet_id is None:
                _ack(packet, writer)
                return
            if durable is not self._batch:
                # one callback per batch, the batch's PUBACKs in one write per connection
                self._batch, self._batch_acks = durable, []
                durable.add_done_callback(functools.partial(_ack_batch, self._batch_acks))
            self._batch_acks.append((packet.packet_id, writer))
            if len(self._batch_acks) == COMMIT_AT_UNACKED:
                self.core.ingest.commit_now()
            return
        self._queue.put_nowait((packet, writer))

    async def _consume(self) -> None:
        while True:
            packet, writer = await self._queue.get()
            try:
                await self._handle(packet)
            except Exception:
                log.exception("handling %s failed", packet.topic)
            _ack(packet, writer)

    async def _handle(self, packet: codec.Publish) -> None:
        settings = self.core.settings
        if packet.topic == SUBSCRIBED_TOPIC:
            report = json.loads(packet.payload)
            if self.hooks is not None and isinstance(report, dict):
                await self.hooks.subscribed(report.get("username"), str(report["clientid"]), str(report["topic"]))
            return
        client_id = parse_pair_request(packet.topic)
        if client_id is not None:
            known = self.hooks.clients.get(client_id) if self.hooks is not None else None
            bound = known is not None and known.role is Role.PAIR
            reply = await answer_pair_request(
                self.core.devices,
                settings.max_payload_bytes,
                known.serial if bound and known else None,
                known.grant.pairing_code if bound and known else None,
                packet.payload,
                "unknown",
            )
            await self.link.publish(pair_reply_topic(client_id), json.dumps(reply).encode(), qos=1)
            return
        parsed = parse_device_topic(packet.topic)
        if parsed is None:
            return
        if parsed.channel is Channel.ACK:
            raw, ts = unstamp(packet.payload)
            with contextlib.suppress(PayloadRejected):
                await self.core.commands.on_ack(parsed.serial, raw, ts, redelivered=packet.dup)
        elif parsed.channel is Channel.MANIFEST:
            if packet.payload:
                with contextlib.suppress(NxgError):
                    await self.core.manifests.from_device(parsed.serial, packet.payload)
        elif parsed.channel is Channel.CMD_REQ:
            # the broker's ACL let only keys that may write this device publish here
            await handle_command_request(
                self.core.commands, self.link, settings.max_payload_bytes, parsed.serial, packet.payload, "mqtt"
            )


def claim_slot(directory: Path) -> tuple[int, int]:
    """The lowest free slot of `directory` and the descriptor holding it (an exclusive flock: held
    while the process lives, released by the kernel however it ends)."""
    directory.mkdir(parents=True, exist_ok=True)
    for slot in itertools.count():
        fd = os.open(directory / f"{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return slot, fd
    raise AssertionError("unreachable")


_STAMP_KEY = b'"' + SERVER_TS.encode() + b'":'
_STAMP_TAIL = re.compile(rb"(\d{1,15})\}\s*")


def unstamp(payload: bytes) -> tuple[bytes, int | None]:
    """The payload as the device sent it, and the broker's stamp (None when there is none): a
    trailing `,"server_ts":<ms>}`. Only the last occurrence of the key can end the payload, so it
    is found from the end (a regex search tried every position of every message)."""
    at = payload.rfind(_STAMP_KEY)
    if at < 0:
        return payload, None
    tail = _STAMP_TAIL.fullmatch(payload, at + len(_STAMP_KEY))
    if tail is None:
        return payload, None
    start = at - 1 if at > 0 and payload[at - 1] == 0x2C else at  # with the comma the plugin added
    return payload[:start] + b"}", int(tail.group(1))


def _published_by_the_core(raw: bytes) -> bool:
    """A Warning event the core published (stamped before the broker stamped it again), coming back
    through the shared subscription: already stored. (A device that sends a `server_ts` key of its
    own in an event only loses that event.)"""
    if SERVER_TS.encode() not in raw:
        return False
    try:
        value = json.loads(raw)
    except ValueError:
        return False
    return isinstance(value, dict) and SERVER_TS in value


def _ack_batch(acks: list[tuple[int, asyncio.StreamWriter]], done: asyncio.Future[None]) -> None:
    """The batch committed: acknowledge its messages (a failed commit acknowledges nothing)."""
    if done.cancelled() or done.exception() is not None:
        return
    by_writer: dict[asyncio.StreamWriter, list[bytes]] = {}
    for packet_id, writer in acks:
        by_writer.setdefault(writer, []).append(codec.encode_puback(packet_id))
    for writer, packets in by_writer.items():
        if not writer.is_closing():
            writer.write(b"".join(packets))


def _ack(packet: codec.Publish, writer: asyncio.StreamWriter) -> None:
    """PUBACK on the connection the message came on (a newer connection knows nothing of it)."""
    if packet.qos == 1 and packet.packet_id is not None and not writer.is_closing():
        writer.write(codec.encode_puback(packet.packet_id))
