"""Seed 002's cognition observations, kept as what they are: device events of category `observation`.

Nothing reasons about them (no HX47, no proposals acted upon): an observation is validated,
stored in the device's history and shown live like any event, and its `proposal_id` names that
record. The README says so.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from nxg_mqtt import messages
from nxg_mqtt.errors import PayloadRejected, ValidationError
from nxg_mqtt.messages import compact
from nxg_mqtt.models import HistoryEntry, history_ts
from nxg_mqtt.protocol import OBSERVATION_CATEGORY, MessageType, core_stamp
from nxg_mqtt.services.ingest import IngestService
from nxg_mqtt.topics import Channel, device_topic

log = logging.getLogger(__name__)
CONTEXT_MAX = 200


class ObservationService:
    def __init__(self, ingest: IngestService, max_bytes: int) -> None:
        self._ingest = ingest
        self._max_bytes = max_bytes
        self._tasks: set[asyncio.Task[int]] = set()

    async def observe(self, serial: str, data: Any, context: Any, *, actor: str) -> str:
        """Record an observation about device `serial` (already checked to be the caller's);
        its `proposal_id`."""
        if not isinstance(data, dict):
            raise ValidationError('"data" must be a JSON object')
        if context is not None and (not isinstance(context, str) or len(context) > CONTEXT_MAX):
            raise ValidationError(f'"context" must be a string of at most {CONTEXT_MAX} characters')
        proposal_id = str(uuid.uuid4())
        event: dict[str, Any] = {
            "type": OBSERVATION_CATEGORY,
            "severity": "Info",
            "category": OBSERVATION_CATEGORY,
            "eventId": proposal_id,
            "body": {"data": data, "context": context, "proposal_id": proposal_id, "by": actor},
        }
        raw = compact(event).encode()
        try:
            # the same limits as a device's own event (size, depth, number range)
            messages.device_message(MessageType.EVENT.value, messages.decode_object(raw, self._max_bytes))
        except PayloadRejected as exc:
            raise ValidationError(f"observation rejected: {exc.message}") from None
        entry = HistoryEntry(serial, MessageType.EVENT, history_ts(serial), {"t": MessageType.EVENT.value, **event})
        self._ingest.record(entry)
        # live too, stamped with the ts history holds, as the broker stamps a device's event
        task = asyncio.get_running_loop().create_task(
            self._ingest.publisher.publish(device_topic(serial, Channel.EVENT), core_stamp(raw, entry.ts), qos=0)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return proposal_id
