"""Which gateway socket is live for each serial; kept apart from the route so `state` can hold it."""

from __future__ import annotations

from typing import Protocol

from nxg_mqtt.protocol import RevokeReason


class LiveDevice(Protocol):
    """What the registry needs of a gateway socket."""

    @property
    def serial(self) -> str | None: ...

    async def revoked(self, why: RevokeReason) -> None: ...

    def taken_over(self) -> None: ...


class GatewaySessions:
    """The live gateway socket of each serial (the newest wins) and the revocation listener."""

    def __init__(self) -> None:
        self._by_serial: dict[str, LiveDevice] = {}

    def claim(self, session: LiveDevice, serial: str) -> LiveDevice | None:
        previous = self._by_serial.get(serial)
        self._by_serial[serial] = session
        return previous if previous is not session else None

    def release(self, session: LiveDevice) -> bool:
        """True if `session` was its serial's current socket (then presence must go offline)."""
        serial = session.serial
        if serial is not None and self._by_serial.get(serial) is session:
            del self._by_serial[serial]
            return True
        return False

    def current(self, serial: str) -> LiveDevice | None:
        return self._by_serial.get(serial)

    async def revoke(self, serial: str, why: RevokeReason) -> None:
        session = self._by_serial.get(serial)
        if session is not None:
            await session.revoked(why)

    def __len__(self) -> int:
        return len(self._by_serial)
