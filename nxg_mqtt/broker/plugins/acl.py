"""The topic ACL of PROTOCOL §2, deny by default.

A device publishes only to its own telemetry/status/event/manifest/ack/prop/set/http/res and
subscribes only to its own `nxg/{S}/{cmd,prop,prop/res,http/req}` (exact topics, no wildcards);
a pairing session speaks only on `nxg/pair/{C}`; nobody but the server (and the bridge acting
for WebSocket devices) publishes commands, presence, properties or proxy requests; `$SYS/#` is the
bridge's. An API key (`key` sessions) reads and commands only the devices of its scope and of
its tenant (seed 002): another tenant's device is as absent as one outside the device list.
Anonymous sessions exist only on a standalone broker started with `--allow-anonymous`,
where everything but the server-only topics is open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from amqtt.contexts import Action

from nxg_mqtt.broker.plugins.base import NxgPlugin
from nxg_mqtt.broker.session import BrokerSession
from nxg_mqtt.models import ApiKey
from nxg_mqtt.protocol import Role, Scope
from nxg_mqtt.topics import (
    DEVICE_PUBLISHES,
    DEVICE_SUBSCRIBES,
    PREFIX,
    Channel,
    pair_reply_topic,
    pair_request_topic,
    parse_device_topic,
)

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


async def key_allows(key: ApiKey | None, topic: str, action: Action | None, owner_of: OwnerOf) -> bool:
    """An API key: read `nxg/{S}/{KEY_READS}` with `read:devices`, publish `nxg/{S}/cmd/req`
    with `write:devices`, for S in its device scope and its tenant. A filter is either exact or
    has `+` as the serial level, and that only for a key on every device; any other wildcard
    (`#`, `nxg/S/+`) would cover topics it may not read, so it is refused whole. A `+` filter
    is granted, and every message it would bring is checked on RECEIVE, where the device (and
    so its tenant) is known."""
    if key is None:
        return False
    if action == Action.PUBLISH:
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
    if action == Action.SUBSCRIBE and topic.startswith(f"{PREFIX}/+/") and key.devices is None:
        parsed = parse_device_topic(topic.replace("/+/", "/x/", 1))
        return parsed is not None and "+" not in topic[6:] and parsed.channel in KEY_READS
    parsed = parse_device_topic(topic)  # wildcards never parse: refused
    return (
        parsed is not None
        and parsed.channel in KEY_READS
        and key.sees(parsed.serial)
        and await owner_of(parsed.serial) == key.tenant
    )


class AclPlugin(NxgPlugin):
    async def topic_filtering(
        self, *, session: BrokerSession | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        if session is None or topic is None:
            return False
        role = session.role
        if role == Role.BRIDGE:
            return True
        if topic.startswith("$SYS"):
            return False
        if role == Role.DEVICE:
            serial = session.serial
            if serial is None:
                return False
            if action == Action.PUBLISH:
                parsed = parse_device_topic(topic)
                return parsed is not None and parsed.serial == serial and parsed.channel in DEVICE_PUBLISHES
            # subscribe and receive: exactly its own command, property and proxy topics, no wildcards
            parsed = parse_device_topic(topic)
            return parsed is not None and parsed.serial == serial and parsed.channel in DEVICE_SUBSCRIBES
        if role == Role.KEY:
            return await key_allows(session.api_key, topic, action, self.core.tenants.owner)
        if role == Role.PAIR:
            client_id = session.client_id
            if action == Action.PUBLISH:
                return bool(topic == pair_request_topic(client_id))
            return bool(topic == pair_reply_topic(client_id))
        if role == Role.ANONYMOUS:
            if action == Action.PUBLISH:
                parsed = parse_device_topic(topic)
                return parsed is None or parsed.channel not in _SERVER_ONLY
            # pairing replies carry tokens: never to an anonymous `#` subscriber
            return not (action == Action.RECEIVE and topic.startswith("nxg/pair/"))
        return False
