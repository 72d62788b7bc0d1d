"""The answer to a pairing request on `nxg/pair/{C}/req` (PROTOCOL §2, §6), whichever broker
carried it: the embedded broker's pairing plugin and the MQTT worker behind Mosquitto/EMQX both
call `answer_pair_request`.

The session was bound to its device when its CONNECT's code was checked, so the request's `code`
is optional; if given it must be the same code. Answers: `{"t":"pair_ok","serial","token"}` or
`{"t":"pair_error","error"}`.
"""

from __future__ import annotations

from typing import Any

from nxg_mqtt import messages
from nxg_mqtt.errors import NxgError
from nxg_mqtt.protocol import Schema
from nxg_mqtt.services import credentials
from nxg_mqtt.services.devices import DeviceService


async def answer_pair_request(
    devices: DeviceService, max_payload: int, serial: str | None, bound_code: str | None, data: bytes, source: str
) -> dict[str, Any]:
    """`serial`/`bound_code`: the device the session's CONNECT bound it to; None when this process
    did not see that CONNECT (another serving process did), and then the request's `code` says."""
    try:
        request = messages.decode_object(data, max_payload) if data else {}
        messages.validate(Schema.PAIR_REQUEST, request)
        given = request.get("code")
        if serial is None or bound_code is None:
            if given is None:
                return {"t": "pair_error", "error": "this pairing session is unknown here; send the code"}
            device = await devices.resolve_code(given, source)
            serial, bound_code = device.serial, device.code
        elif given is not None and credentials.normalize_code(given) != bound_code:
            return {"t": "pair_error", "error": "code does not match this pairing session"}
        paired = await devices.complete_pairing(serial, bound_code, source)
    except NxgError as exc:
        return {"t": "pair_error", "error": exc.message}
    return {"t": "pair_ok", "serial": paired.serial, "token": paired.token}
