"""Who may connect and what they may touch (PROTOCOL §2): the one decision every broker asks.

Two adapters call it: the embedded broker's auth and ACL plugins, and the HTTP hooks that
Mosquitto (through `mosquitto/nxg_plugin.c`), EMQX or VerneMQ call (`nxg_mqtt.external.hooks`).
A rule added here (a new role, a new topic) holds for every broker at once.

    access = AccessDecisions(core.devices, core.keys, settings)
    grant = await access.authenticate(Credentials("S1", token, "S1", "10.0.0.7"))  # or ConnectRefused
    topic_allowed(subject, "nxg/S1/telemetry", AclAction.PUBLISH)

CONNACK codes (raised as `ConnectRefused`): a wrong connection code is 0x04; a device with an
unknown serial, a wrong or stale token, a client id different from its username, or no
credentials is 0x05 (auth_reset_required); an address locked out for wrong codes, wrong bridge
secrets or wrong API keys gets 0x03 (try later); a pairing client id that is not a valid single
topic level is 0x02.

Lockouts (PROTOCOL §6) limit one role's guesses and nothing else: wrong connection codes lock
pairing from that address (the device service's `resolve_code`), wrong bridge secrets lock the
`bridge` user name and wrong API keys the `key` user name (here, per instance). Neither ever
refuses a device with a valid token, and a refusal for another reason counts nowhere.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from nxg_mqtt.errors import AuthError, ConnectRefused, RateLimitedError
from nxg_mqtt.models import ApiKey
from nxg_mqtt.protocol import Role, Scope
from nxg_mqtt.ratelimit import Lockout
from nxg_mqtt.services.api_keys import ApiKeyService
from nxg_mqtt.services.certificates import CertificateService
from nxg_mqtt.services.devices import DeviceService
from nxg_mqtt.settings import Settings
from nxg_mqtt.topics import (
    DEVICE_PUBLISHES,
    DEVICE_SUBSCRIBES,
    PREFIX,
    Channel,
    pair_reply_topic,
    pair_request_topic,
    parse_device_topic,
    valid_client_level,
)

log = logging.getLogger(__name__)

SECRET_LOCK_S = 60.0
PAIR_USER = "pair"
BRIDGE_USER = "bridge"
KEY_USER = "key"
# the core's own topics on a foreign broker (kicks, the credential feed, the plugin's reports):
# only the bridge publishes or subscribes there, whatever else a role may do
INTERNAL_PREFIX = "$nxg/"

_SERVER_ONLY = frozenset(
    {Channel.CMD, Channel.PRESENCE, Channel.CMD_RES, Channel.PROP, Channel.PROP_RES, Channel.HTTP_REQ}
)
# what an integrator's key may read of a device in its scope (PROTOCOL §2's topic table)
KEY_READS = frozenset(
    {
        Channel.TELEMETRY,
        Channel.STATUS,
        Channel.EVENT,
        Channel.ACK,
        Channel.CMD,
        Channel.CMD_RES,
        Channel.PRESENCE,
        Channel.PROP,
    }
)

OwnerOf = Callable[[str], Awaitable[str | None]]  # serial → owning tenant, None: no such device


class AclAction(StrEnum):
    """What a client does with a topic (amqtt's `Action` values, EMQX's `action` plus `receive`)."""

    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    RECEIVE = "receive"  # a message about to be delivered (Mosquitto's MOSQ_ACL_READ)


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str | None
    password: str | None
    client_id: str
    source: str  # the peer address: lockouts count per address
    peer_cert: bytes | None = None  # a verified TLS client certificate (DER): mTLS login, seed 003


@dataclass(frozen=True, slots=True)
class Grant:
    """An accepted CONNECT: the role and the identity (serial, key id, bound device; empty for the
    bridge and anonymous), plus what the ACL needs to know of it."""

    role: Role
    identity: str = ""
    serial: str | None = None  # the device itself, or the device a pairing session is bound to
    pairing_code: str | None = None
    api_key: ApiKey | None = None

    @property
    def superuser(self) -> bool:
        return self.role is Role.BRIDGE


class Subject(Protocol):
    """What the ACL reads of a session: the embedded broker's `BrokerSession` and the hooks'
    remembered clients both fit."""

    @property
    def role(self) -> Role | None: ...

    @property
    def serial(self) -> str | None: ...

    @property
    def client_id(self) -> str: ...

    @property
    def api_key(self) -> ApiKey | None: ...


class AccessDecisions:
    def __init__(
        self, devices: DeviceService, keys: ApiKeyService, settings: Settings, certificates: CertificateService
    ) -> None:
        self._devices = devices
        self._certificates = certificates
        self._keys = keys
        self._settings = settings
        # wrong shared secrets per (role, source address); the `key` role joins it with API keys
        self._secret_failures = Lockout(settings.connect_failures_per_minute, SECRET_LOCK_S)

    async def authenticate(self, creds: Credentials) -> Grant:
        """The grant of an accepted CONNECT, else `ConnectRefused` with its CONNACK code."""
        username, password, source = creds.username, creds.password, creds.source
        if creds.peer_cert is not None and not password:
            # a device certificate (seed 003): one Active for the client id's device logs it in
            serial = await self._certificates.login(creds.client_id, creds.peer_cert)
            if serial is not None and serial == creds.client_id and username in (None, serial):
                return Grant(Role.DEVICE, serial, serial=serial)
        if username is None:
            if self._settings.allow_anonymous:
                return Grant(Role.ANONYMOUS)
            raise ConnectRefused(ConnectRefused.NOT_AUTHORIZED, "credentials required")
        if username == PAIR_USER:
            return await self._pairing(creds.client_id, password or "", source)
        if username == BRIDGE_USER:
            self._check_secret(Role.BRIDGE, source, password, self._settings.internal_secret)
            return Grant(Role.BRIDGE)
        if username == KEY_USER:
            key = await self._check_key(source, password)
            return Grant(Role.KEY, key.id, api_key=key)
        if creds.client_id != username:
            raise ConnectRefused(ConnectRefused.NOT_AUTHORIZED, "client id must equal the serial")
        serial = await self._devices.authenticate(username, password or "")
        if serial is None or serial != username:
            raise ConnectRefused(ConnectRefused.NOT_AUTHORIZED, "auth_reset_required")
        return Grant(Role.DEVICE, serial, serial=serial)

    def _check_secret(self, role: Role, source: str, given: str | None, expected: str) -> None:
        """A shared secret, with a lockout on this role's wrong guesses from `source` only."""
        key = f"{role}|{source}"
        now = time.monotonic()
        locked_for = self._secret_failures.locked_for(key, now)
        if locked_for > 0:
            raise ConnectRefused(
                ConnectRefused.SERVER_UNAVAILABLE, f"too many wrong {role} secrets", retry_after=locked_for
            )
        if not (given and hmac.compare_digest(given.encode(errors="surrogateescape"), expected.encode())):
            if self._secret_failures.fail(key, now):
                log.warning("%s logins locked for %s after repeated wrong secrets", role, source)
            raise ConnectRefused(ConnectRefused.BAD_CREDENTIALS, f"bad {role} secret")

    async def _check_key(self, source: str, given: str | None) -> ApiKey:
        """An API key (the key service's cached check), with the `key` role's lockout on wrong
        keys from `source`: 0x04 for a wrong key, 0x03 while locked (like a wrong bridge secret)."""
        lock = f"{Role.KEY}|{source}"
        now = time.monotonic()
        locked_for = self._secret_failures.locked_for(lock, now)
        if locked_for > 0:
            raise ConnectRefused(ConnectRefused.SERVER_UNAVAILABLE, "too many wrong API keys", retry_after=locked_for)
        key = await self._keys.check(given)
        if key is None:
            if self._secret_failures.fail(lock, now):
                log.warning("key logins locked for %s after repeated wrong keys", source)
            raise ConnectRefused(ConnectRefused.BAD_CREDENTIALS, "unknown API key")
        return key

    async def _pairing(self, client_id: str, code: str, source: str) -> Grant:
        if not valid_client_level(client_id):
            raise ConnectRefused(ConnectRefused.IDENTIFIER_REJECTED, "pairing client id must be one topic level")
        try:
            device = await self._devices.resolve_code(code, source)
        except RateLimitedError as exc:
            raise ConnectRefused(ConnectRefused.SERVER_UNAVAILABLE, exc.message, retry_after=exc.retry_after) from None
        except AuthError as exc:
            raise ConnectRefused(ConnectRefused.BAD_CREDENTIALS, exc.message) from None
        return Grant(Role.PAIR, device.serial, serial=device.serial, pairing_code=device.code)


async def topic_allowed(subject: Subject, topic: str, action: AclAction, owner_of: OwnerOf) -> bool:
    """The topic ACL of PROTOCOL §2, deny by default.

    A device publishes only to its own telemetry/status/event/manifest/ack/prop/set/http/res and
    subscribes only to its own `nxg/{S}/{cmd,prop,prop/res,http/req}` (exact topics, no wildcards);
    a pairing session speaks only on `nxg/pair/{C}`; nobody but the server (and the bridge acting
    for WebSocket devices) publishes commands, presence, properties or proxy requests; `$SYS/#` is
    the bridge's. An API key reads and commands only the devices of its scope and of its tenant
    (seed 002; `owner_of` names a device's tenant): another tenant's device is as absent as one
    outside the device list. Anonymous sessions
    exist only on a standalone broker started with `--allow-anonymous`, where everything but the
    server-only topics is open.
    """
    role = subject.role
    if role == Role.BRIDGE:
        return True
    if topic.startswith(("$SYS", INTERNAL_PREFIX)):
        return False
    if role == Role.DEVICE:
        serial = subject.serial
        if serial is None:
            return False
        if action == AclAction.PUBLISH:
            parsed = parse_device_topic(topic)
            return parsed is not None and parsed.serial == serial and parsed.channel in DEVICE_PUBLISHES
        # subscribe and receive: exactly its own command, property and proxy topics, no wildcards
        parsed = parse_device_topic(topic)
        return parsed is not None and parsed.serial == serial and parsed.channel in DEVICE_SUBSCRIBES
    if role == Role.KEY:
        return await key_allows(subject.api_key, topic, action, owner_of)
    if role == Role.PAIR:
        client_id = subject.client_id
        if action == AclAction.PUBLISH:
            return bool(topic == pair_request_topic(client_id))
        return bool(topic == pair_reply_topic(client_id))
    if role == Role.ANONYMOUS:
        if action == AclAction.PUBLISH:
            parsed = parse_device_topic(topic)
            return parsed is None or parsed.channel not in _SERVER_ONLY
        # pairing replies carry tokens: never to an anonymous `#` subscriber
        return not (action == AclAction.RECEIVE and topic.startswith("nxg/pair/"))
    return False


async def key_allows(key: ApiKey | None, topic: str, action: AclAction, owner_of: OwnerOf) -> bool:
    """An API key: read `nxg/{S}/{KEY_READS}` with `read:devices`, publish `nxg/{S}/cmd/req`
    with `write:devices`, for S in its device scope and its tenant. A filter is either exact or
    has `+` as the serial level, and that only for a key on every device; any other wildcard
    (`#`, `nxg/S/+`) would cover topics it may not read, so it is refused whole. A `+` filter
    is granted, and every message it would bring is checked on RECEIVE, where the device (and
    so its tenant) is known."""
    if key is None:
        return False
    if action == AclAction.PUBLISH:
        parsed = parse_device_topic(topic)
        return (
            parsed is not None
            and parsed.channel is Channel.CMD_REQ
            and Scope.WRITE_DEVICES in key.scopes
            and key.sees(parsed.serial)
            and await owner_of(parsed.serial) == key.tenant
        )
    if Scope.READ_DEVICES not in key.scopes:
        return False
    if action == AclAction.SUBSCRIBE and topic.startswith(f"{PREFIX}/+/") and key.devices is None:
        parsed = parse_device_topic(topic.replace("/+/", "/x/", 1))
        return parsed is not None and "+" not in topic[6:] and parsed.channel in KEY_READS
    parsed = parse_device_topic(topic)  # wildcards never parse: refused
    return (
        parsed is not None
        and parsed.channel in KEY_READS
        and key.sees(parsed.serial)
        and await owner_of(parsed.serial) == key.tenant
    )
