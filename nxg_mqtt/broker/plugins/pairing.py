"""Pairing over MQTT: `nxg/pair/{C}/req` → `nxg/pair/{C}` with `pair_ok` (serial, token) or `pair_error`.

The session was bound to its device when the auth plugin checked the code at CONNECT, so the
request's `code` is optional; if given it must be the same code. Requests are never routed to
other subscribers (they carry the code). A pairing session lives at most `pairing_session_s`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from nxg_mqtt.broker.message import IncomingMessage
from nxg_mqtt.broker.plugins.base import NxgPlugin
from nxg_mqtt.broker.server import BrokerContext
from nxg_mqtt.broker.session import BrokerSession
from nxg_mqtt.core import Core
from nxg_mqtt.protocol import CloseReason, Role
from nxg_mqtt.services.pairing import answer_pair_request
from nxg_mqtt.topics import pair_reply_topic, parse_pair_request

log = logging.getLogger(__name__)


class PairingPlugin(NxgPlugin):
    def __init__(self, context: BrokerContext, core: Core) -> None:
        super().__init__(context, core)
        self._kicks: set[asyncio.Task[bool]] = set()  # a task nobody holds may be collected early

    async def validate_message(self, *, session: BrokerSession, message: IncomingMessage) -> bool | None:
        client_id = parse_pair_request(message.topic)
        if client_id is None:
            return None
        if session.role != Role.PAIR or client_id != session.client_id:
            return False
        reply = await self._pair(session, message.data)
        await self.broker.publish(pair_reply_topic(client_id), json.dumps(reply).encode(), qos=1)
        return False

    async def _pair(self, session: BrokerSession, data: bytes) -> dict[str, Any]:
        return await answer_pair_request(
            self.core.devices,
            self.settings.max_payload_bytes,
            session.serial or "",
            session.pairing_code or "",
            data,
            session.remote_address or "unknown",
        )

    async def on_broker_client_connected(self, *, client_id: str, client_session: BrokerSession) -> None:
        if client_session.role != Role.PAIR:
            return
        loop = asyncio.get_running_loop()
        client_session.pairing_expiry = loop.call_later(
            self.settings.pairing_session_s, self._expire, client_id, client_session
        )

    def _expire(self, client_id: str, client_session: BrokerSession) -> None:
        current = self.broker.session(client_id)
        if current is None or current is not client_session:
            return
        task = asyncio.get_running_loop().create_task(self.broker.kick(client_id, CloseReason.PAIRING_EXPIRED))
        self._kicks.add(task)
        task.add_done_callback(self._kicks.discard)

    async def on_broker_client_disconnected(self, *, client_id: str, client_session: BrokerSession) -> None:
        handle = client_session.pairing_expiry
        if handle is not None:
            client_session.pairing_expiry = None
            handle.cancel()
