"""What a foreign broker asks the core, answered by the same decisions as the embedded broker's
plugins (`nxg_mqtt.services.access`), plus the state those plugins keep on their sessions.

The embedded engine keeps a session object per client id; a foreign broker only tells us names.
So this service remembers, per client id, the grant its CONNECT got (`Client`): the ACL of an API
key needs the key (the broker's ACL request carries no password), a client id belongs to one
principal while the broker may hold its session (the embedded engine's rule, MQTT-3.1.4-2 with
roles: only a device reclaims its own serial), and pairing sessions are bound to their device.

Presence: `connected` marks a device online; `disconnected` marks it offline unless it names a
connection that is no longer the device's current one (`conn`, sent by the Mosquitto plugin) or
a takeover reason (EMQX's `takenover`/`discarded`): a takeover leaves the device online.

Never wait for the broker inside a hook: the broker is blocked on our answer (Mosquitto runs its
plugin on its one thread), and presence publishes through it. So the presence and command-
readiness calls go to one queue, run in order by one task, after the answer has gone out; and
that task waits while a hook answer is being made (`answering`): a blocking `/mqtt/auth` is
never queued behind hundreds of presence updates. The plugin's reports of one read of the link
(`reported_many`: a CONNECT storm's hundreds of `$nxg/connected`) become one presence batch
(`PresenceService.apply`): the state and the journal one by one, the retained messages together.

Kicks (reset/regenerate/delete/revoke, a key revoked, a pairing session past 60 s): the core
publishes the client id on `KICK_TOPIC` through its MQTT link (the `bridge` role, the only one the
ACL lets publish there); the Mosquitto plugin intercepts that topic, calls
`mosquitto_kick_client_by_clientid` and drops its ACL cache and the client's credential entry
(`nxg_mqtt.hooks.credentials`); the device's entry is then sent as the store has it now. Nobody else can subscribe to it
(`$` topics match no wildcard; the ACL refuses it to everyone but the bridge).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nxg_mqtt.core import Core
from nxg_mqtt.errors import ConnectRefused, GatewayError
from nxg_mqtt.hooks.credentials import CredentialFeed
from nxg_mqtt.models import ApiKey
from nxg_mqtt.protocol import CloseReason, RevokeReason, Role
from nxg_mqtt.services.access import (
    BRIDGE_USER,
    KEY_USER,
    PAIR_USER,
    AccessDecisions,
    AclAction,
    Credentials,
    Grant,
    topic_allowed,
)
from nxg_mqtt.services.presence import PresenceChange
from nxg_mqtt.topics import Channel, device_topic

log = logging.getLogger(__name__)

KICK_TOPIC = "$nxg/kick"
SUBSCRIBED_TOPIC = "$nxg/subscribed"  # the plugin reports cache-allowed subscriptions here
# the plugin reports logins it allowed from its credential table (`CredentialFeed`), and every
# disconnect, here: without a call, so the broker's thread does not wait for this process
CONNECTED_TOPIC = "$nxg/connected"
DISCONNECTED_TOPIC = "$nxg/disconnected"
# logins the plugin refused itself (0x05): a listed device's other password (the credential table,
# `nxg_mqtt.hooks.credentials`), or exactly a login the core refused before (`password_refused_s`);
# counted here as the refusals the core answers are
REFUSED_TOPIC = "$nxg/refused"
REPORT_TOPICS = (CONNECTED_TOPIC, DISCONNECTED_TOPIC, REFUSED_TOPIC)
# how long a broker may refuse the same (user name, client id, password) again without asking,
# unless that user's login changes first (a credential delta or a kick: see `password_refused_s`)
PASSWORD_REFUSED_S = 60.0
# the longest queued presence work waits for hook answers being made (`HookService.answering`)
ANSWERS_FIRST_S = 0.05
PRESENCE_CHUNK = 32  # presence changes applied in one go (`reported_many`)
# EMQX's disconnect reasons that mean another connection took the client id over
TAKEOVER_REASONS = frozenset({"takenover", "discarded", "taken over"})


@dataclass(slots=True)
class Client:
    """A client id as the hooks know it: the grant of the CONNECT that holds it. Fits the ACL's
    `Subject`."""

    client_id: str
    grant: Grant
    conn: str | None = None  # the broker's name for the current connection (Mosquitto plugin)
    connected: bool = False

    @property
    def role(self) -> Role:
        return self.grant.role

    @property
    def serial(self) -> str | None:
        return self.grant.serial

    @property
    def api_key(self) -> ApiKey | None:
        return self.grant.api_key


class HookService:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.access = AccessDecisions(core.devices, core.keys, core.settings, core.certificates)
        self.clients: dict[str, Client] = {}
        self._kicked: set[str] = set()  # client ids kicked by us: their disconnect says so
        self._expiry: dict[str, asyncio.TimerHandle] = {}  # pairing sessions' 60 s limit
        self._tasks: set[asyncio.Task[None]] = set()
        self._later: asyncio.Queue[Coroutine[Any, Any, None]] = asyncio.Queue()
        self._runner: asyncio.Task[None] | None = None
        self._answers = 0  # hook answers being made now (`answering`)
        self._no_answers = asyncio.Event()  # set while there are none: the queue may run
        self._no_answers.set()
        # reported_connects: logins the plugin allowed from its credential table (no auth call)
        self.counters = {
            "auth_allow": 0,
            "auth_deny": 0,
            "acl_allow": 0,
            "acl_deny": 0,
            "kicks": 0,
            "reported_connects": 0,
            "reported_refusals": 0,
        }
        self.credentials = CredentialFeed(core, self.topics_of)
        core.devices.on_revoked(self._device_revoked)
        core.devices.on_credentials(self.credentials.refresh)
        core.keys.on_revoked(self._key_revoked)

    # ---- auth and ACL ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Around making a hook answer (the HTTP listener's handlers): the broker is waiting for it,
        so the queued presence work waits instead (it resumes once no answer is being made)."""
        self._answers += 1
        self._no_answers.clear()
        try:
            yield
        finally:
            self._answers -= 1
            if self._answers == 0:
                self._no_answers.set()

    async def authenticate(self, creds: Credentials, conn: str | None = None) -> Grant:
        """The grant, or `ConnectRefused` with the CONNACK code PROTOCOL §2 names. With `conn` (the
        broker's name for this connection: the Mosquitto plugin sends it) an accepted CONNECT is
        also the connection event: one call per CONNECT instead of two, the broker waits for each."""
        try:
            grant = await self.access.authenticate(creds)
            held = self.clients.get(creds.client_id)
            if held is not None and not _same_principal(held.grant, grant) and not _owns(grant, creds.client_id):
                raise ConnectRefused(ConnectRefused.IDENTIFIER_REJECTED, f"client id held by {held.role}")
        except ConnectRefused:
            self.counters["auth_deny"] += 1
            raise
        self.counters["auth_allow"] += 1
        # remembered now: this connection's ACL checks may come before its `connected`
        self.clients[creds.client_id] = Client(
            creds.client_id, grant, held.conn if held else None, held is not None and held.connected
        )
        if conn is not None:
            await self.connected(creds.username, creds.client_id, creds.source, conn)
        return grant

    def password_refused_s(self, creds: Credentials, refused: ConnectRefused) -> float | None:
        """How long a broker may give this exact login (user name, client id, password) the same
        0x05 without asking again, or None: only a device login (not the `pair`, `bridge` or `key`
        roles, whose refusals lockouts count), refused 0x05 (a wrong or stale token, an unknown
        serial, a revoked device, a client id other than the serial).

        Why this never refuses a valid token later: a token is drawn at random by the core and its
        hash is committed to the store before the token is given to anyone (pairing reply, REST;
        the CLI makes none), so a password the core refuses was not that serial's token when it
        was refused, and it becomes valid only if the core happens to draw it for that serial.
        Besides, every change of a serial's login (pairing, registration, rotation, reset, delete,
        revoke) reaches the plugin as a credential delta or a kick, which drop the refusals kept
        for that user name; a snapshot (the link back) drops them all; and `PASSWORD_REFUSED_S`
        bounds each. Wrong tokens count towards no lockout (PROTOCOL §6), so nothing else is
        refused because of it."""
        username = creds.username
        if (
            refused.return_code != ConnectRefused.NOT_AUTHORIZED
            or not username
            or username in (PAIR_USER, BRIDGE_USER, KEY_USER)
            or creds.password is None
        ):
            return None
        return PASSWORD_REFUSED_S

    async def allowed(self, username: str | None, client_id: str, topic: str, action: AclAction) -> bool:
        client = self._subject(username, client_id)
        allowed = client is not None and await topic_allowed(client, topic, action, self.core.tenants.owner)
        self.counters["acl_allow" if allowed else "acl_deny"] += 1
        if (
            allowed
            and client is not None
            and action is AclAction.SUBSCRIBE
            and client.role is Role.DEVICE
            and topic == device_topic(client.serial or "", Channel.CMD)
        ):
            # queued commands go out once the device subscribes; the broker adds the subscription
            # right after this answer, before it reads our publish from another socket
            self._after(self.core.presence.subscribed_commands(client.serial or ""))
        return allowed

    async def topics_of(self, grant: Grant, client_id: str) -> list[dict[str, str]]:
        """What a device's login may do with its own topics, as EMQX 5's authn `acl` rules
        (`{"permission":"allow","action":"publish"|"subscribe","topic"}`; `subscribe` where both
        subscribing and receiving are allowed), decided one by one by `topic_allowed`: a broker
        may answer these from its cache instead of asking (the Mosquitto plugin does; a kick drops
        them). Only exact topics of the device itself; anything else is still asked."""
        if grant.role is not Role.DEVICE or not grant.serial:
            return []
        client = Client(client_id, grant)
        owner = self.core.tenants.owner
        rules: list[dict[str, str]] = []
        for channel in Channel:
            topic = device_topic(grant.serial, channel)
            if await topic_allowed(client, topic, AclAction.PUBLISH, owner):
                rules.append({"permission": "allow", "action": "publish", "topic": topic})
            if await topic_allowed(client, topic, AclAction.SUBSCRIBE, owner) and await topic_allowed(
                client, topic, AclAction.RECEIVE, owner
            ):
                rules.append({"permission": "allow", "action": "subscribe", "topic": topic})
        return rules

    async def subscribed(self, username: str | None, client_id: str, topic: str) -> None:
        """A subscription the broker allowed from its cache (`topics_of`) and reported afterwards
        (the plugin's `$nxg/subscribed`): what asking would have done (queued commands go out)."""
        await self.allowed(username, client_id, topic, AclAction.SUBSCRIBE)

    def _subject(self, username: str | None, client_id: str) -> Client | None:
        """The remembered client; else what the user name alone says (a broker asks the ACL only
        of authenticated clients, e.g. after this process restarted). A key needs its grant."""
        known = self.clients.get(client_id)
        if known is not None:
            return known
        if username == BRIDGE_USER:
            return Client(client_id, Grant(Role.BRIDGE))
        if username == PAIR_USER:
            return Client(client_id, Grant(Role.PAIR))
        if username and username != KEY_USER and username == client_id:
            return Client(client_id, Grant(Role.DEVICE, username, serial=username))
        return None

    # ---- presence -------------------------------------------------------------------------------

    async def connected(self, username: str | None, client_id: str, peerhost: str | None, conn: str | None) -> None:
        self._presence(self._connected(username, client_id, peerhost, conn))

    def _connected(
        self, username: str | None, client_id: str, peerhost: str | None, conn: str | None, ts: int | None = None
    ) -> PresenceChange | None:
        """This process's state of a connect; the presence change it makes, to be applied later."""
        client = self._subject(username, client_id)
        if client is None:
            return None
        client.conn, client.connected = conn, True
        self.clients[client_id] = client
        self._kicked.discard(client_id)
        if client.role is Role.DEVICE and client.serial:
            return PresenceChange(client.serial, True, "mqtt", remote=peerhost, ts=ts)
        if client.role is Role.PAIR:
            loop = asyncio.get_running_loop()
            old = self._expiry.pop(client_id, None)
            if old is not None:
                old.cancel()
            self._expiry[client_id] = loop.call_later(
                self.core.settings.pairing_session_s, lambda: self._spawn(self.kick(client_id))
            )
        return None

    def reported_many(self, reports: Sequence[tuple[str, Mapping[str, object]]]) -> None:
        """The plugin's reports (connects allowed from its credential table, every disconnect),
        told afterwards; those of one read of the link, in order: this process's state at once
        (an ACL check or a kick right after sees it), the presence work in batches, queued."""
        changes: list[PresenceChange] = []
        for topic, report in reports:
            client_id, username, conn = report.get("clientid"), report.get("username"), report.get("conn")
            if not isinstance(client_id, str) or not client_id:
                continue
            change = None
            if topic == CONNECTED_TOPIC:
                self.counters["reported_connects"] += 1
                peerhost = _text(report.get("peerhost"))
                change = self._connected(_text(username), client_id, peerhost, _text(conn), _stamp(report.get("ts")))
            elif topic == DISCONNECTED_TOPIC:
                change = self._disconnected(client_id, _text(conn), None, _stamp(report.get("ts")))
            elif topic == REFUSED_TOPIC:
                # refused by the plugin from the core's own earlier answer: counted as if asked
                self.counters["reported_refusals"] += 1
                self.counters["auth_deny"] += 1
            if change is not None:
                changes.append(change)
        # in chunks: the queue looks at the hook answers between two (a batch is one loop turn
        # of work, and a hook answer must not wait for hundreds)
        for start in range(0, len(changes), PRESENCE_CHUNK):
            self._after(self.core.presence.apply(changes[start : start + PRESENCE_CHUNK]))

    async def disconnected(self, client_id: str, conn: str | None, reason: str | None) -> None:
        self._presence(self._disconnected(client_id, conn, reason))

    def _presence(self, change: PresenceChange | None) -> None:
        if change is not None:
            self._after(self.core.presence.apply([change]))

    def _disconnected(
        self, client_id: str, conn: str | None, reason: str | None, ts: int | None = None
    ) -> PresenceChange | None:
        """This process's state of a disconnect; the presence change it makes, to be applied later."""
        client = self.clients.get(client_id)
        if client is None or not client.connected:
            return None
        if (conn is not None and client.conn is not None and conn != client.conn) or (reason in TAKEOVER_REASONS):
            return None  # an older connection of a client id taken over: the current one stays
        client.connected = False
        if client.role is Role.PAIR:
            del self.clients[client_id]  # never stored nor resumed: dies with its socket
            handle = self._expiry.pop(client_id, None)
            if handle is not None:
                handle.cancel()
        change = None
        if client.role is Role.DEVICE and client.serial:
            why = CloseReason.KICKED if client_id in self._kicked else _close_reason(reason)
            change = PresenceChange(client.serial, False, "mqtt", reason=why, ts=ts)
        self._kicked.discard(client_id)
        return change

    # ---- kicks ----------------------------------------------------------------------------------

    async def kick(self, client_id: str) -> None:
        """Ask the broker to close `client_id`'s connection (and drop its cached ACL answers)."""
        self._kicked.add(client_id)
        self.counters["kicks"] += 1
        try:
            await self.core.outbox.publish(KICK_TOPIC, client_id.encode(), qos=1)
        except Exception:
            log.exception("asking the broker to kick %s failed", client_id)

    async def _device_revoked(self, serial: str, why: RevokeReason) -> None:
        client = self.clients.get(serial)
        # kicked even when this process does not remember it (it may have restarted since the
        # device connected): a kick of a client id nobody holds is a no-op for the broker
        if client is None or client.role is Role.DEVICE:
            await self.kick(serial)
        # the kick dropped the plugin's entry; what the store says now (a rotated or re-paired
        # device's new hash, or nothing). Not sent: the table stays as it was until the link is
        # back (a token issued meanwhile is not handed out: `DeviceService.credentials_issued`)
        with contextlib.suppress(GatewayError):
            await self.credentials.refresh(serial)
        if why in (RevokeReason.REGENERATE, RevokeReason.DELETE):
            for other in list(self.clients.values()):
                if other.role is Role.PAIR and other.serial == serial and other.connected:
                    await self.kick(other.client_id)

    async def _key_revoked(self, key_id: str) -> None:
        for client in list(self.clients.values()):
            if client.role is Role.KEY and client.grant.identity == key_id:
                del self.clients[client.client_id]
                await self.kick(client.client_id)

    def _after(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` after the current answer, in the order asked (presence must not reorder)."""
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run_later(), name="nxg-hooks-later")
        self._later.put_nowait(work)

    async def _run_later(self) -> None:
        while True:
            work = await self._later.get()
            # the broker is waiting for an answer: that first; bounded, so that a broker calling
            # without pause (EMQX's concurrent calls) still gets presence
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._no_answers.wait(), ANSWERS_FIRST_S)
            try:
                await work
            except Exception:
                log.exception("a presence update from the broker hooks failed")
            finally:
                self._later.task_done()

    async def drain(self) -> None:
        """Wait until the queued presence updates have run (tests, shutdown)."""
        await self._later.join()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        await self.credentials.close()
        if self._runner is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drain(), 2.0)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for handle in self._expiry.values():
            handle.cancel()
        for task in list(self._tasks):
            task.cancel()


def _stamp(value: object) -> int | None:
    """A report's `ts` (ms since the epoch, the plugin's stamp); None if absent or not one."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**53:
        return value
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _same_principal(a: Grant, b: Grant) -> bool:
    return a.role is b.role and a.identity == b.identity


def _owns(grant: Grant, client_id: str) -> bool:
    """A device reclaims its own serial from whoever holds it (as on the embedded engine)."""
    return grant.role is Role.DEVICE and grant.identity == client_id


def _close_reason(reason: str | None) -> CloseReason:
    if reason in ("keepalive_timeout", "keepalive timeout"):
        return CloseReason.KEEPALIVE_TIMEOUT
    if reason in ("normal", "disconnected", None, ""):
        return CloseReason.DISCONNECTED
    return CloseReason.CONNECTION_LOST
