"""Who may connect (PROTOCOL §2): pairing sessions, devices, API keys, the bridge; nobody anonymous.

Each accepted CONNECT gets its principal (`Principal(role, identity)`): the engine lets a client
id's session be taken over or resumed only by the same principal, so roles never meet.

CONNACK codes: a wrong connection code is 0x04; a device with an unknown serial, a wrong or
stale token, a client id different from its username, or no credentials is 0x05
(auth_reset_required: the firmware erases its token and pairs again); an address locked out
for wrong codes gets 0x03 (server unavailable: try later) even with the right code; a pairing
client id that is not a valid single topic level is 0x02.

Lockouts (PROTOCOL §6) limit one role's guesses and nothing else: wrong connection codes lock
pairing from that address (the core's `resolve_code`), wrong bridge secrets lock the `bridge`
user name from that address and wrong API keys the `key` user name (here). Revoking or rotating
a key ends its sessions at once (a `core.keys` listener). Neither ever refuses a device with a valid token, and a
refusal for another reason (a stale token, an unsupported protocol level) counts nowhere.
"""

from __future__ import annotations

import asyncio
import hmac

from nxg_mqtt.broker.plugins.base import NxgPlugin
from nxg_mqtt.broker.server import BrokerContext
from nxg_mqtt.broker.session import BrokerSession, Principal
from nxg_mqtt.core import Core
from nxg_mqtt.errors import AuthError, ConnectRefused, RateLimitedError
from nxg_mqtt.models import ApiKey
from nxg_mqtt.protocol import CloseReason, RevokeReason, Role
from nxg_mqtt.ratelimit import Lockout
from nxg_mqtt.topics import valid_client_level

SECRET_LOCK_S = 60.0


class AuthPlugin(NxgPlugin):
    def __init__(self, context: BrokerContext, core: Core) -> None:
        super().__init__(context, core)
        self._pairing: dict[str, set[str]] = {}  # serial → pairing client ids bound to it
        # wrong shared secrets per (role, source address); the `key` role joins it with API keys
        self._secret_failures = Lockout(self.settings.connect_failures_per_minute, SECRET_LOCK_S)
        core.devices.on_revoked(self._revoked)
        core.keys.on_revoked(self._key_revoked)

    async def authenticate(self, *, session: BrokerSession) -> bool | None:
        username, password = session.username, session.password
        source = session.remote_address or "unknown"
        if session.peer_cert is not None and not password:
            # a device certificate (seed 003): Active for the client id's device logs it in
            serial = await self.core.certificates.login(session.client_id or "", session.peer_cert)
            if serial == session.client_id and username in (None, serial):
                return self._device(session, serial)
        if username is None:
            if self.settings.allow_anonymous:
                session.principal = Principal(Role.ANONYMOUS)
                session.is_anonymous = True
                return True
            raise ConnectRefused(ConnectRefused.NOT_AUTHORIZED, "credentials required")
        if username == "pair":
            return await self._pairing_session(session, password or "", source)
        if username == "bridge":
            self._check_secret(Role.BRIDGE, source, password, self.settings.internal_secret)
            session.principal = Principal(Role.BRIDGE)
            session.receive_all = True
            return True
        if username == "key":
            key = await self._check_key(source, password)
            session.principal = Principal(Role.KEY, key.id)
            session.api_key = key
            return True
        if session.client_id != username:
            raise ConnectRefused(ConnectRefused.NOT_AUTHORIZED, "client id must equal the serial")
        serial = await self.core.devices.authenticate(username, password or "")
        if serial is None or serial != username:
            raise ConnectRefused(ConnectRefused.NOT_AUTHORIZED, "auth_reset_required")
        return self._device(session, serial)

    def _device(self, session: BrokerSession, serial: str) -> bool:
        session.principal = Principal(Role.DEVICE, serial)
        session.serial = serial
        if session.keep_alive == 0:
            # keepalive 0 would let a dead device look online forever
            session.keep_alive = self.settings.device_keepalive_zero_s
        return True

    def _check_secret(self, role: Role, source: str, given: str | None, expected: str) -> None:
        """A shared secret, with a lockout on this role's wrong guesses from `source` only."""
        key = f"{role}|{source}"
        now = asyncio.get_running_loop().time()
        if self._secret_failures.locked(key, now):
            raise ConnectRefused(ConnectRefused.SERVER_UNAVAILABLE, f"too many wrong {role} secrets")
        if not (given and hmac.compare_digest(given.encode(errors="surrogateescape"), expected.encode())):
            if self._secret_failures.fail(key, now):
                self.context.logger.warning("%s logins locked for %s after repeated wrong secrets", role, source)
            raise ConnectRefused(ConnectRefused.BAD_CREDENTIALS, f"bad {role} secret")

    async def _check_key(self, source: str, given: str | None) -> ApiKey:
        """An API key (the core's cached check), with the `key` role's lockout on wrong keys from
        `source`: 0x04 for a wrong key, 0x03 while locked (like a wrong bridge secret)."""
        lock = f"{Role.KEY}|{source}"
        now = asyncio.get_running_loop().time()
        if self._secret_failures.locked(lock, now):
            raise ConnectRefused(ConnectRefused.SERVER_UNAVAILABLE, "too many wrong API keys")
        key = await self.core.keys.check(given)
        if key is None:
            if self._secret_failures.fail(lock, now):
                self.context.logger.warning("key logins locked for %s after repeated wrong keys", source)
            raise ConnectRefused(ConnectRefused.BAD_CREDENTIALS, "unknown API key")
        return key

    async def _key_revoked(self, key_id: str) -> None:
        """A revoked or rotated key's MQTT sessions end now."""
        principal = Principal(Role.KEY, key_id)
        for client_id, session in list(self.broker.sessions.items()):
            if session.principal == principal:
                await self.broker.kick(client_id, CloseReason.KICKED)

    async def _pairing_session(self, session: BrokerSession, code: str, source: str) -> bool:
        if not valid_client_level(session.client_id or ""):
            raise ConnectRefused(ConnectRefused.IDENTIFIER_REJECTED, "pairing client id must be one topic level")
        try:
            device = await self.core.devices.resolve_code(code, source)
        except RateLimitedError as exc:
            raise ConnectRefused(ConnectRefused.SERVER_UNAVAILABLE, exc.message) from None
        except AuthError as exc:
            raise ConnectRefused(ConnectRefused.BAD_CREDENTIALS, exc.message) from None
        session.principal = Principal(Role.PAIR, device.serial)
        session.serial = device.serial
        session.pairing_code = device.code
        # a pairing session is never stored nor resumed: it dies with its socket
        session.clean_session = True
        return True

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
