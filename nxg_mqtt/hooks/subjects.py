"""Who a broker's question is about: a client id as the hooks know it, and what a user name alone
says of one (`nxg_mqtt.hooks.service` remembers them; the front process, `hooks.front`, decides on
the user name alone). Light on imports: the front starts with every Mosquitto profile stack."""

from __future__ import annotations

from dataclasses import dataclass

from nxg_mqtt.models import ApiKey
from nxg_mqtt.protocol import Role
from nxg_mqtt.services.access import BRIDGE_USER, KEY_USER, PAIR_USER, Grant


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


def subject_by_name(username: str | None, client_id: str) -> Client | None:
    """What the user name alone says of an authenticated client (the broker asks the ACL only of
    those): the bridge, a pairing session, or a device whose client id is its serial; a key (its
    ACL needs the key's grant) or anything else: None."""
    if username == BRIDGE_USER:
        return Client(client_id, Grant(Role.BRIDGE))
    if username == PAIR_USER:
        return Client(client_id, Grant(Role.PAIR))
    if username and username != KEY_USER and username == client_id:
        return Client(client_id, Grant(Role.DEVICE, username, serial=username))
    return None
