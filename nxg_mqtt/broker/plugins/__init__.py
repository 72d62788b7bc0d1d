"""NXG's broker plugins, one per concern, each a thin call into the core.

They follow amqtt's plugin contract (subclasses of amqtt's `BasePlugin`, amqtt's hook names and
keyword arguments, `Action` for the ACL) and take the core as an extra constructor argument.
`nxg_plugins(core)` lists them in the order the broker must call them: credentials first, then
the ACL, then the message handlers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from nxg_mqtt.broker.plugins.acks import AckPlugin
from nxg_mqtt.broker.plugins.acl import AclPlugin
from nxg_mqtt.broker.plugins.auth import AuthPlugin
from nxg_mqtt.broker.plugins.base import NxgPlugin
from nxg_mqtt.broker.plugins.command_requests import CommandRequestPlugin
from nxg_mqtt.broker.plugins.http_proxy import HttpProxyPlugin
from nxg_mqtt.broker.plugins.ingest import IngestPlugin
from nxg_mqtt.broker.plugins.pairing import PairingPlugin
from nxg_mqtt.broker.plugins.presence import PresencePlugin
from nxg_mqtt.broker.plugins.properties import PropertyPlugin
from nxg_mqtt.broker.server import BrokerContext
from nxg_mqtt.core import Core


def nxg_plugins(core: Core) -> Sequence[Callable[[BrokerContext], Any]]:
    classes: list[type[NxgPlugin]] = [
        AuthPlugin,
        AclPlugin,
        PairingPlugin,
        IngestPlugin,
        AckPlugin,
        CommandRequestPlugin,
        PropertyPlugin,
        HttpProxyPlugin,
        PresencePlugin,
    ]
    return [lambda context, cls=cls: cls(context, core) for cls in classes]  # type: ignore[misc]


__all__ = [
    "AckPlugin",
    "AclPlugin",
    "AuthPlugin",
    "CommandRequestPlugin",
    "HttpProxyPlugin",
    "IngestPlugin",
    "PairingPlugin",
    "PresencePlugin",
    "PropertyPlugin",
    "nxg_plugins",
]
