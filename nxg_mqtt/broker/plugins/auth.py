"""Who may connect (PROTOCOL §2): pairing sessions, devices, the bridge; nobody anonymous.

CONNACK codes: a wrong connection code is 0x04; a device with an unknown serial, a wrong or
stale token, a client id different from its username, or no credentials is 0x05
(auth_reset_required: the firmware erases its token and pairs again); an address locked out
for wrong codes gets 0x03 (server unavailable: try later) even with the right code; a pairing
client id that is not a valid single topic level is 0x02.
"""

from __future__ import annotations

import hmac
from typing import Any

from nxg_mqtt.broker.plugins.base import ROLE_ANONYMOUS, ROLE_BRIDGE, ROLE_DEVICE, ROLE_PAIR, NxgPlugin
from nxg_mqtt.broker.server import BrokerContext
from nxg_mqtt.core import Core
from nxg_mqtt.errors import AuthError, ConnectRefused, RateLimitedError
from nxg_mqtt.topics import valid_client_level


class AuthPlugin(NxgPlugin):
    def __init__(self, context: BrokerContext, core: Core) -> None:
        super().__init__(context, core)
        self._pairing: dict[str, set[str]] = {}  # serial → pairing client ids bound to it
        core.devices.on_revoked(self._revoked)

    async def authenticate(self, *, session: Any) -> bool | None:
        username, password = session.username, session.password
        source = session.remote_address or "unknown"
        if username is None:
            if self.settings.allow_anonymous:
                session.role = ROLE_ANONYMOUS
                session.is_anonymous = True
                return True
            raise ConnectRefused(ConnectRefused.NOT_AUTHORIZED, "credentials required")
        if username == "pair":
            return await self._pairing_session(session, password or "", source)
        if username == "bridge":
            if password and hmac.compare_digest(password, self.settings.internal_secret):
                session.role = ROLE_BRIDGE
                session.attrs["receive_all"] = True
                return True
            raise ConnectRefused(ConnectRefused.BAD_CREDENTIALS, "bad internal secret")
        if username == "key":
            # API keys arrive with their own issue; until then no key is valid
            raise ConnectRefused(ConnectRefused.NOT_AUTHORIZED, "unknown API key")
        if session.client_id != username:
            raise ConnectRefused(ConnectRefused.NOT_AUTHORIZED, "client id must equal the serial")
        serial = await self.core.devices.authenticate(username, password or "")
        if serial is None or serial != username:
            raise ConnectRefused(ConnectRefused.NOT_AUTHORIZED, "auth_reset_required")
        session.role = ROLE_DEVICE
        session.serial = serial
        if session.keep_alive == 0:
            # keepalive 0 would let a dead device look online forever
            session.keep_alive = self.settings.device_keepalive_zero_s
        return True

    async def _pairing_session(self, session: Any, code: str, source: str) -> bool:
        if not valid_client_level(session.client_id or ""):
            raise ConnectRefused(ConnectRefused.IDENTIFIER_REJECTED, "pairing client id must be one topic level")
        try:
            device = await self.core.devices.resolve_code(code, source)
        except RateLimitedError as exc:
            raise ConnectRefused(ConnectRefused.SERVER_UNAVAILABLE, exc.message) from None
        except AuthError as exc:
            raise ConnectRefused(ConnectRefused.BAD_CREDENTIALS, exc.message) from None
        session.role = ROLE_PAIR
        session.serial = device.serial
        session.attrs["code"] = device.code
        return True

    async def on_broker_client_connected(self, *, client_id: str, client_session: Any) -> None:
        if client_session.role == ROLE_PAIR and client_session.serial:
            self._pairing.setdefault(client_session.serial, set()).add(client_id)

    async def on_broker_client_disconnected(self, *, client_id: str, client_session: Any) -> None:
        if client_session.role == ROLE_PAIR and client_session.serial:
            bound = self._pairing.get(client_session.serial)
            if bound is not None:
                bound.discard(client_id)
                if not bound:
                    del self._pairing[client_session.serial]

    async def _revoked(self, serial: str, why: str) -> None:
        """Reset/regenerate/delete/re-pair: the device's session ends now; pairing sessions bound to
        the old code end too when the code itself is gone (regenerate, delete)."""
        session = self.broker.session(serial)
        if session is not None and session.role == ROLE_DEVICE:
            await self.broker.kick(serial, "kicked")
        if why in ("regenerate", "delete"):
            for client_id in list(self._pairing.get(serial, ())):
                await self.broker.kick(client_id, "kicked")
