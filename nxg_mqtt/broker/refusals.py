"""Log lines for refused CONNECTs: one per refusal, except while an address is locked out.

A lockout (CONNACK 0x03: too many wrong connection codes, bridge secrets or API keys from one
address, PROTOCOL §6) refuses whatever that address tries for minutes. Each of those refusals
still gets its CONNACK and is counted (`NxgBroker.refused_by_code`), but a line each would let a
client retrying in a loop fill the log at will, and costs the event loop about 45 µs per line in
a CONNECT storm's wrong-code share. So per address, the first locked-out refusal of each
interval is logged, carrying how many were left unlogged since the previous line. Every other
refusal (wrong token, wrong code, another protocol level) keeps its own line.
"""

from __future__ import annotations

from nxg_mqtt.errors import ConnectRefused

INTERVAL_S = 10.0
MAX_ADDRESSES = 4096  # locked-out addresses remembered at once; beyond it the stale ones go


class RefusalLines:
    __slots__ = ("_last", "interval")

    def __init__(self, interval: float = INTERVAL_S) -> None:
        self.interval = interval
        self._last: dict[str, tuple[float, int]] = {}  # address → (its last line's time, unlogged since)

    def admit(self, code: int, address: str | None, now: float) -> int | None:
        """None: leave this refusal out of the log. Otherwise log it, saying that this many
        locked-out refusals from the same address were left out since its previous line."""
        if code != ConnectRefused.SERVER_UNAVAILABLE or address is None:
            return 0
        last = self._last.get(address)
        if last is not None and now - last[0] < self.interval:
            self._last[address] = (last[0], last[1] + 1)
            return None
        if last is None and len(self._last) >= MAX_ADDRESSES:
            self._prune(now)
        self._last[address] = (now, 0)
        return last[1] if last is not None else 0

    def _prune(self, now: float) -> None:
        stale = [address for address, (at, _) in self._last.items() if now - at >= self.interval]
        for address in stale:
            del self._last[address]
        if len(self._last) >= MAX_ADDRESSES:
            self._last.clear()  # a flood of locked-out addresses: their counts start over
