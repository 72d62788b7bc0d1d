"""The HTTP proxy to devices (seed 003's proxy tokens, PROTOCOL §2's `http/req` → `http/res`).

`request()` publishes `{"id","method","path","port","headers","body_b64"}` on `nxg/{S}/http/req`
and waits for the device's `{"id","status","headers","body_b64"}` on `nxg/{S}/http/res` (handed
in by the broker plugin through `answer()`), matched by id and serial. Bodies are limited both
ways (`proxy_max_body_bytes`); no answer within `proxy_timeout_s` is `GatewayTimeout` (504).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import secrets
from dataclasses import dataclass

from nxg_mqtt.errors import GatewayError, GatewayTimeout, PayloadRejected, TooLargeError
from nxg_mqtt.messages import decode_object, schema_errors
from nxg_mqtt.protocol import Schema
from nxg_mqtt.services import Publisher
from nxg_mqtt.settings import Settings
from nxg_mqtt.topics import Channel, device_topic

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProxyResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class ProxyService:
    def __init__(self, settings: Settings, publisher: Publisher) -> None:
        self._settings = settings
        self._publisher = publisher
        self._waiting: dict[str, tuple[str, asyncio.Future[ProxyResponse]]] = {}  # id → (serial, answer)

    async def request(
        self, serial: str, method: str, path: str, port: int, headers: dict[str, str], body: bytes
    ) -> ProxyResponse:
        limit = self._settings.proxy_max_body_bytes
        if len(body) > limit:
            raise TooLargeError(f"request body larger than {limit} bytes")
        request_id = secrets.token_hex(8)
        future: asyncio.Future[ProxyResponse] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = (serial, future)
        message = {
            "id": request_id,
            "method": method,
            "path": path,
            "port": port,
            "headers": headers,
            "body_b64": base64.b64encode(body).decode(),
        }
        try:
            await self._publisher.publish(device_topic(serial, Channel.HTTP_REQ), json.dumps(message).encode(), qos=1)
            return await asyncio.wait_for(future, self._settings.proxy_timeout_s)
        except TimeoutError:
            waited = self._settings.proxy_timeout_s
            raise GatewayTimeout(f"device {serial} did not answer within {waited:g} s") from None
        finally:
            self._waiting.pop(request_id, None)

    def answer(self, serial: str, raw: bytes) -> None:
        """A device's `http/res`: resolves the request it names (an unknown or late id is dropped)."""
        limit = self._settings.proxy_max_body_bytes
        try:
            answer = decode_object(raw, limit * 2 + 4096)
        except PayloadRejected as exc:
            log.warning("http/res from %s dropped: %s", serial, exc.message)
            return
        request_id = answer.get("id")
        waiting = self._waiting.get(request_id) if isinstance(request_id, str) else None
        if waiting is None or waiting[0] != serial or waiting[1].done():
            return
        future = waiting[1]
        problem = schema_errors(Schema.HTTP_RES, answer)
        if problem is not None:
            future.set_exception(GatewayError(f"the device's answer does not match its schema: {problem}"))
            return
        try:
            body = base64.b64decode(answer.get("body_b64", ""), validate=True)
        except (binascii.Error, ValueError):
            future.set_exception(GatewayError("the device's body_b64 is not base64"))
            return
        if len(body) > limit:
            future.set_exception(GatewayError(f"the device's body is larger than {limit} bytes"))
            return
        future.set_result(ProxyResponse(int(answer["status"]), dict(answer.get("headers") or {}), body))
