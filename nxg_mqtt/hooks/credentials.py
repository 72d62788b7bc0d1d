"""The core's device login answers, given to the Mosquitto plugin ahead of time.

    feed = CredentialFeed(core, hooks.topics_of)
    feed.attach(worker.link)      # the link's every connect sends a full snapshot
    await feed.refresh(serial)    # after any change of that device's token (a delta)

Why: Mosquitto 2.0's basic-auth event is synchronous, so a login answered by the hooks stops the
broker's one thread for a round trip to this Python process (1–2 ms while the cores are busy: a
CONNECT storm delayed everyone's messages 47-fold). A device whose answer the plugin already
holds logs in without a call, and the plugin reports the connection afterwards
(`$nxg/connected`), so presence, the connection log and queued commands happen as before.

What is sent is exactly what `DeviceService.authenticate` allows: a device with a token that is
not revoked, by its canonical serial, with its client id (= the serial: `AccessDecisions`), the
stored token hash (SHA-256 hex, as `devices.token_hash`: the plugin never sees a token) and the
login's ACL rules (`HookService.topics_of`, the same `topic_allowed` decisions as the `acl` of
`/mqtt/auth`), written with `%u` for the serial so that every device shares one rule list in the
plugin. A listed device's client id with another password is refused by the plugin (0x05, see the
ordering guarantee below). Every other login (pairing, the bridge, API keys, a device not listed)
is asked about as before.

Text lines on `CREDENTIALS_TOPIC` (the format is described in `mosquitto/nxg_plugin.c`): a
snapshot `begin <gen>`, `put@<gen> ...` in chunks, `end <gen>` replaces the plugin's table; a
delta `put ...` or `del <serial>` changes one device. Ordering: one lock, so a delta goes out
after any snapshot chunk already read; `begin` is acknowledged (the plugin has taken it) before
the snapshot reads the store, so a change made after that read arrives as a delta the snapshot
cannot undo (the plugin keeps a `del` made during a snapshot as a dead entry).

While the link is down no delta can arrive (like kicks): a token revoked meanwhile stays
listed until the link is back, when the snapshot replaces the table. A kick drops the device's
entry in the plugin too, so revocations (kick first, then the delta) never rely on the delta alone.

The ordering guarantee (what lets the plugin refuse a wrong token of a listed device itself,
CONNACK 0x05, without a blocking call): **the plugin holds a device's current token hash before
anyone can hold that token.** Device tokens are made only by a serving process (pairing over MQTT
or `/ws/gateway`, `POST /api/v1/devices` registration, secret rotation; the CLI issues none), and
each of those awaits `DeviceService.credentials_issued` after committing the hash and before
returning the token: `refresh` publishes the delta at QoS 1 and returns on the broker's PUBACK,
which Mosquitto sends after the plugin's message callback has applied it (the callback runs on
the broker's one thread, before the acknowledgement). If the delta is not acknowledged (no link,
a timeout), `credentials_issued` raises `GatewayError` and the token is not handed out (a
`pair_error`, a 502): the device keeps its code and pairs again. A second serving process issues
through its own link the same way. The plugin refuses from the table only while no snapshot is
under way (a snapshot may be replacing a table another run of the core filled) and only for an
entry it can use (not dead); everything else is asked. Tested in
`tests/mosquitto/test_credential_table.py` (a token issued a moment ago logs in on its first try,
with the table refusing wrong tokens of listed devices; an issuance whose delta cannot be sent
hands out no token).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable

from nxg_mqtt.core import Core
from nxg_mqtt.errors import GatewayError
from nxg_mqtt.protocol import Role
from nxg_mqtt.services import Publisher
from nxg_mqtt.services.access import BRIDGE_USER, KEY_USER, PAIR_USER, Grant

log = logging.getLogger(__name__)

CREDENTIALS_TOPIC = "$nxg/credentials"
CHUNK_ENTRIES = 256  # ~25 kB per message: a 100k-device snapshot is ~400 acknowledged messages
_NOT_IN_A_NAME = frozenset(" \t\r\n;%")  # the line format's separators and the pattern marker
_ROLE_NAMES = frozenset({BRIDGE_USER, KEY_USER, PAIR_USER})
# the last "rule" of a list that holds every topic the login may use (mosquitto/nxg_plugin.c)
COMPLETE = "!"

RulesOf = Callable[[Grant, str], Awaitable[list[dict[str, str]]]]


class CredentialFeed:
    def __init__(self, core: Core, rules_of: RulesOf) -> None:
        self._core = core
        self._rules_of = rules_of
        self._link: Publisher | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.snapshots = 0  # completed, for tests and logs
        self.deltas = 0

    def attach(self, link: Publisher) -> None:
        self._link = link

    def link_up(self) -> None:
        """The link (re)connected: the plugin may have missed deltas, or be new; send everything."""
        task = asyncio.get_running_loop().create_task(self._snapshot_logged(), name="nxg-credentials-snapshot")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _snapshot_logged(self) -> None:
        try:
            await self.snapshot()
        except GatewayError as exc:
            log.warning("credential snapshot not sent (%s); the next link connect sends it", exc)
        except Exception:
            log.exception("credential snapshot failed")

    async def snapshot(self) -> int:
        """Send every device login the core would allow; returns how many."""
        async with self._lock:
            gen = secrets.randbelow(2**31 - 1) + 1
            # acknowledged before the read: a change after the read comes as a delta after `begin`
            await self._send(f"begin {gen}")
            lines: list[str] = []
            count = 0
            for serial, token_hash in await self._core.store.devices.logins():
                line = await self._entry(serial, token_hash)
                if line is None:
                    continue
                lines.append(f"put@{gen} {line}")
                count += 1
                if len(lines) >= CHUNK_ENTRIES:
                    await self._send("\n".join(lines))
                    lines = []
            if lines:
                await self._send("\n".join(lines))
            await self._send(f"end {gen}")
            self.snapshots += 1
            log.info("credential snapshot %d sent: %d devices", gen, count)
            return count

    async def refresh(self, serial: str) -> None:
        """A delta: the device's entry as the store says now (listed, or no longer). Returns once
        the broker acknowledged it, i.e. once the plugin has taken it (see the guarantee above);
        `GatewayError` if it could not be sent: a new token must then not be handed out. Without
        a link at all (hooks served with no broker link of this process) there is nothing to keep
        in step."""
        if self._link is None:
            return
        async with self._lock:
            found = await self._core.store.devices.token_hash(serial)
            line = None
            if found is not None and not found[2] and found[1] is not None:
                line = await self._entry(str(found[0]), str(found[1]))
            try:
                await self._send(f"put {line}" if line is not None else f"del {serial}")
            except GatewayError as exc:
                # the plugin keeps its entry until the link is back and the snapshot replaces it
                log.warning("credential change of %s not sent (%s)", serial, exc)
                raise
            self.deltas += 1

    async def _entry(self, serial: str, token_hash: str) -> str | None:
        """`<serial> <client id> <hash> <rules>`, or None for a serial the format cannot carry."""
        if serial in _ROLE_NAMES or not serial or any(c in _NOT_IN_A_NAME for c in serial):
            return None
        rules = await self._rules_of(Grant(Role.DEVICE, serial, serial=serial), serial)
        patterns: list[str] = []
        for rule in rules:
            topic = "/".join("%u" if level == serial else level for level in rule["topic"].split("/"))
            if any(c in _NOT_IN_A_NAME for c in topic.replace("%u", "")):
                continue  # not listed: asked about
            patterns.append(("p:" if rule["action"] == "publish" else "s:") + topic)
        if len(patterns) == len(rules):
            # COMPLETE: a device may publish to and subscribe to exactly its own topics that
            # `topics_of` lists (`topic_allowed`), so the plugin denies anything else without a
            # call; a paired device publishing on foreign topics cannot stall the broker's thread
            patterns.append(COMPLETE)
        return f"{serial} {serial} {token_hash} {';'.join(patterns)}"

    async def _send(self, text: str) -> None:
        link = self._link
        if link is None:
            raise GatewayError("no broker link")
        await link.publish(CREDENTIALS_TOPIC, text.encode(), qos=1)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
