"""Calling amqtt-contract plugins: authentication, topic ACL, message validation and events.

Every hook is awaited directly, in plugin order — no task per call, so events keep their order
and a slow plugin slows only the connection that triggered it. Each call is wrapped: an
exception is logged with its traceback and counted in `stats["plugin_errors"]`, and never
breaks the connection or the other plugins. A check that raises fails closed: an auth plugin
that raises counts as a refusal, an ACL or validator that raises denies.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from amqtt.contexts import Action

from nxg_mqtt.broker.message import IncomingMessage
from nxg_mqtt.broker.session import BrokerSession
from nxg_mqtt.errors import ConnectRefused

EVENTS = (
    "on_broker_pre_start",
    "on_broker_post_start",
    "on_broker_pre_shutdown",
    "on_broker_post_shutdown",
    "on_broker_client_connected",
    "on_broker_client_disconnected",
    "on_broker_client_subscribed",
    "on_broker_client_unsubscribed",
    "on_broker_message_received",
    "on_broker_message_broadcast",
)

_Hook = Callable[..., Awaitable[Any]]


class PluginHost:
    """The plugins of one broker, sorted by the hooks they implement."""

    def __init__(self, plugins: Sequence[Any], logger: logging.Logger, stats: dict[str, int]) -> None:
        self.plugins = list(plugins)
        self.logger = logger
        self.stats = stats
        self.authenticators = _bound(plugins, "authenticate")
        self.topic_filters = _bound(plugins, "topic_filtering")
        self.validators = _bound(plugins, "validate_message")
        self.events: dict[str, list[_Hook]] = {name: _bound(plugins, name) for name in EVENTS}

    def _failed(self, hook: _Hook) -> None:
        self.stats["plugin_errors"] += 1
        self.logger.exception("plugin hook %s failed", getattr(hook, "__qualname__", hook))

    async def fire(self, event: str, **kwargs: Any) -> None:
        for hook in self.events[event]:
            try:
                await hook(**kwargs)
            except Exception:
                self._failed(hook)

    async def authenticate(self, session: BrokerSession, allow_anonymous: bool) -> tuple[int, str]:
        """The CONNACK return code for `session` (0 accepts) and, for a refusal, why (for the log)."""
        refused: ConnectRefused | None = None
        denied = False
        decided = False
        for hook in self.authenticators:
            try:
                result = await hook(session=session)
            except ConnectRefused as exc:
                refused = exc if refused is None else refused
                continue
            except Exception:
                self._failed(hook)
                denied = True
                continue
            if result is not None:
                decided = True
                denied = denied or not result
        if refused is not None:
            return refused.return_code, refused.message
        if denied:
            return ConnectRefused.NOT_AUTHORIZED, "an authentication plugin refused or failed"
        if not decided and not allow_anonymous:
            return ConnectRefused.NOT_AUTHORIZED, "no authentication plugin accepted (anonymous not allowed)"
        return 0, ""

    async def allowed(self, session: BrokerSession, topic: str, action: Action) -> bool:
        """The topic ACL: every plugin with an opinion must allow; no plugins allow everything."""
        for hook in self.topic_filters:
            try:
                result = await hook(session=session, topic=topic, action=action)
            except Exception:
                self._failed(hook)
                return False
            if result is not None and not result:
                return False
        return True

    async def validate(self, session: BrokerSession, message: IncomingMessage) -> bool:
        for hook in self.validators:
            try:
                result = await hook(session=session, message=message)
            except Exception:
                self._failed(hook)
                return False
            if result is False:
                return False
        return True

    async def close(self) -> None:
        for plugin in self.plugins:
            close = getattr(plugin, "close", None)
            if close is None:
                continue
            try:
                await close()
            except Exception:
                self._failed(close)


def _bound(plugins: Sequence[Any], name: str) -> list[_Hook]:
    hooks: list[_Hook] = []
    for plugin in plugins:
        hook = getattr(plugin, name, None)
        if callable(hook):
            hooks.append(hook)
    return hooks
