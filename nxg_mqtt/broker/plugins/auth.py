"""Who may connect (PROTOCOL §2) as an amqtt `authenticate` hook: a thin adapter over the
broker-neutral decision `nxg_mqtt.services.access.AccessDecisions` (CONNACK codes, lockouts),
which the HTTP hooks for Mosquitto, EMQX and VerneMQ call too.

Each accepted CONNECT gets its principal (`Principal(role, identity)`): the engine lets a client
id's session be taken over or resumed only by the same principal, so roles never meet. Revoking
or rotating a key ends its sessions at once (a `core.keys` listener); reset/regenerate/delete of a
device ends its session and, when the code is gone, the pairing sessions bound to it.
"""

from __future__ import annotations

from nxg_mqtt.broker.plugins.base import NxgPlugin
from nxg_mqtt.broker.server import BrokerContext
from nxg_mqtt.broker.session import BrokerSession, Principal
from nxg_mqtt.core import Core
from nxg_mqtt.protocol import CloseReason, RevokeReason, Role
from nxg_mqtt.services.access import AccessDecisions, Credentials


class AuthPlugin(NxgPlugin):
    def __init__(self, context: BrokerContext, core: Core) -> None:
        super().__init__(context, core)
        self._pairing: dict[str, set[str]] = {}  # serial → pairing client ids bound to it
        self.access = AccessDecisions(core.devices, core.keys, core.settings, core.certificates)
        core.devices.on_revoked(self._revoked)
        core.keys.on_revoked(self._key_revoked)

    async def authenticate(self, *, session: BrokerSession) -> bool | None:
        creds = Credentials(
            session.username,
            session.password,
            session.client_id,
            session.remote_address or "unknown",
            session.peer_cert,
        )
        grant = await self.access.authenticate(creds)  # ConnectRefused carries the CONNACK code
        session.principal = Principal(grant.role, grant.identity)
        if grant.role is Role.ANONYMOUS:
            session.is_anonymous = True
        elif grant.role is Role.BRIDGE:
            session.receive_all = True
        elif grant.role is Role.KEY:
            session.api_key = grant.api_key
        elif grant.role is Role.PAIR:
            session.serial = grant.serial
            session.pairing_code = grant.pairing_code
            # a pairing session is never stored nor resumed: it dies with its socket
            session.clean_session = True
        elif grant.role is Role.DEVICE:
            session.serial = grant.serial
            if session.keep_alive == 0:
                # keepalive 0 would let a dead device look online forever
                session.keep_alive = self.settings.device_keepalive_zero_s
        return True

    async def _key_revoked(self, key_id: str) -> None:
        """A revoked or rotated key's MQTT sessions end now."""
        principal = Principal(Role.KEY, key_id)
        for client_id, session in list(self.broker.sessions.items()):
            if session.principal == principal:
                await self.broker.kick(client_id, CloseReason.KICKED)

    async def on_broker_client_connected(self, *, client_id: str, client_session: BrokerSession) -> None:
        if client_session.role == Role.PAIR and client_session.serial:
            self._pairing.setdefault(client_session.serial, set()).add(client_id)

    async def on_broker_client_disconnected(self, *, client_id: str, client_session: BrokerSession) -> None:
        if client_session.role == Role.PAIR and client_session.serial:
            bound = self._pairing.get(client_session.serial)
            if bound is not None:
                bound.discard(client_id)
                if not bound:
                    del self._pairing[client_session.serial]

    async def _revoked(self, serial: str, why: str) -> None:
        """Reset/regenerate/delete/re-pair: the device's session ends now; pairing sessions bound to
        the old code end too when the code itself is gone (regenerate, delete)."""
        session = self.broker.session(serial)
        if session is not None and session.role == Role.DEVICE:
            await self.broker.kick(serial, CloseReason.KICKED)
        if why in (RevokeReason.REGENERATE, RevokeReason.DELETE, RevokeReason.REVOKED):
            for client_id in list(self._pairing.get(serial, ())):
                await self.broker.kick(client_id, CloseReason.KICKED)
