"""The one exception tree of NXG MQTT.

    NxgError                      root; carries a machine `code` and an HTTP `status`
    ├── ValidationError           bad input: 400 (`INVALID`)
    │   ├── PayloadRejected       a device payload broke its schema (`PAYLOAD_INVALID`)
    │   └── SettingError          a setting (flag, NXG_* variable, config file) out of bounds (`INVALID_SETTING`)
    ├── AuthError                 missing or wrong credentials: 401 (`UNAUTHORIZED`)
    ├── ForbiddenError            authenticated but not allowed: 403 (`FORBIDDEN`)
    ├── NotFoundError             unknown device, command, key: 404 (`DEVICE_NOT_FOUND`, …)
    ├── ConflictError             already exists: 409 (`CONFLICT`)
    ├── TooLargeError             an upload over its limit: 413 (`PAYLOAD_TOO_LARGE`)
    ├── RateLimitedError          too many attempts: 429 (`RATE_LIMIT_EXCEEDED`)
    ├── QueueFullError            a device's command queue is at its limit: 429 (`QUEUE_FULL`)
    ├── GatewayError              the broker or a device behind us failed us: 502 (`GATEWAY_ERROR`)
    │   └── GatewayTimeout        … or did not answer in time: 504 (`GATEWAY_TIMEOUT`)
    ├── CommandRejected           a command refused before it reached the device (PROTOCOL §4 code,
    │                             seed 002's status: 400 / 403 / 502); `details` lists schema errors
    ├── DryRunRequired            a critical action: 409 (`DRY_RUN_REQUIRED`) with its `token`
    ├── ConnectRefused            an MQTT CONNECT refused with a CONNACK return code
    └── StoreError                the store failed or its schema is newer than this code

Every error that crosses a surface (REST body, WebSocket `error`, CONNACK) is one of these,
so the surfaces translate by looking at `code`/`status`, never at message text.
"""

from __future__ import annotations

from typing import Any, ClassVar


class NxgError(Exception):
    code: str = "INTERNAL"
    status: int = 500

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class ValidationError(NxgError):
    code = "INVALID"
    status = 400


class PayloadRejected(ValidationError):
    code = "PAYLOAD_INVALID"


class SettingError(ValidationError):
    """A bad setting; the message names it, where it came from and what is allowed (one line)."""

    code = "INVALID_SETTING"


class AuthError(NxgError):
    code = "UNAUTHORIZED"
    status = 401


class ForbiddenError(NxgError):
    code = "FORBIDDEN"
    status = 403


class NotFoundError(NxgError):
    code = "NOT_FOUND"
    status = 404


class DeviceNotFound(NotFoundError):
    code = "DEVICE_NOT_FOUND"

    def __init__(self, serial: str) -> None:
        super().__init__(f"device not found: {serial}")
        self.serial = serial


class ConflictError(NxgError):
    code = "CONFLICT"
    status = 409


class TooLargeError(NxgError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413


class RateLimitedError(NxgError):
    code = "RATE_LIMIT_EXCEEDED"
    status = 429

    def __init__(
        self, message: str, *, code: str | None = None, details: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code, details=details)
        self.retry_after = retry_after  # seconds, when known (the Retry-After header)


class QueueFullError(NxgError):
    """A device already has `command_queue_limit` open commands; retry once some are done."""

    code = "QUEUE_FULL"
    status = 429


class GatewayError(NxgError):
    """Something we depend on upstream (the MQTT broker link, a proxied device) failed: PROTOCOL §6's
    502, never a 5xx of our own making."""

    code = "GATEWAY_ERROR"
    status = 502


class GatewayTimeout(GatewayError):
    code = "GATEWAY_TIMEOUT"
    status = 504


class CommandRejected(NxgError):
    """A command refused by validation (PROTOCOL §4); the status is seed 002's for the code."""

    STATUSES: ClassVar[dict[str, int]] = {
        "MANIFEST_NOT_FOUND": 400,
        "ACTION_NOT_IN_MANIFEST": 400,
        "PARAMS_INVALID": 400,
        "RESTRICTED_ACTION": 403,
        "DEVICE_REVOKED": 403,
        "GATEWAY_ERROR": 502,
    }

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message, code=code, details=details)
        self.status = self.STATUSES.get(code, 400)


class DryRunRequired(ConflictError):
    """A critical action: confirm it with `token` (single use, this device/action/params, 60 s)."""

    code = "DRY_RUN_REQUIRED"

    def __init__(self, token: str, reason: str = "Critical action requires confirmation") -> None:
        super().__init__(reason)
        self.token = token


class ConnectRefused(NxgError):
    """An MQTT CONNECT refused; `return_code` is the MQTT 3.1.1 CONNACK code."""

    code = "CONNECT_REFUSED"
    status = 401

    # MQTT 3.1.1 CONNACK return codes
    BAD_PROTOCOL = 0x01
    IDENTIFIER_REJECTED = 0x02
    SERVER_UNAVAILABLE = 0x03
    BAD_CREDENTIALS = 0x04
    NOT_AUTHORIZED = 0x05

    def __init__(self, return_code: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.return_code = return_code
        # a lockout's 0x03: the seconds until it ends, when known (every login of this role from
        # this address is refused until then, whatever its credentials)
        self.retry_after = retry_after


class StoreError(NxgError):
    code = "STORE_ERROR"
    status = 500
