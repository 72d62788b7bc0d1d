"""Device JWTs and HTTP proxy JWTs (seed 003), signed with EdDSA (Ed25519).

The signing key is made on first use and kept in `{data_dir}/jwt_ed25519.pem` (mode 0600), so
tokens survive restarts and every process on the data directory signs with the same key; its
public half is served at `/.well-known/jwks.json` (`kid` = its RFC 7638 thumbprint) so external
systems validate offline.

Claims: `iss` "nxg-mqtt", `sub` the serial, `tid` the device's owning tenant (seed 003's
`projectId`), `typ` ("device" | "http_proxy"), `dct` the device's `created_at` (a device
deleted and created again under the same serial does not inherit its predecessor's tokens),
`iat`, `exp`, and for device tokens the caller's `claims`, for proxy tokens `hostname`, `port`,
`redirect`. Validation answers None (seed 003's `Invalid`) for a bad signature, another key,
expiry, a `tid` that is not the device's tenant, another `typ`, or a device that no longer
exists.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from nxg_mqtt.errors import DeviceNotFound, ValidationError
from nxg_mqtt.settings import Settings
from nxg_mqtt.store import Store

KEY_FILE = "jwt_ed25519.pem"
ISSUER = "nxg-mqtt"
ALGORITHM = "EdDSA"
DEFAULT_VALID_S = 3600
MAX_VALID_S = 10 * 365 * 86_400


class TokenType:
    DEVICE = "device"
    HTTP_PROXY = "http_proxy"


def load_key(data_dir: Path) -> Ed25519PrivateKey:
    path = data_dir / KEY_FILE
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        fresh = Ed25519PrivateKey.generate()
        pem = fresh.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return load_key(data_dir)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        return fresh
    if not isinstance(key, Ed25519PrivateKey):
        raise ValidationError(f"{path} is not an Ed25519 private key")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk(public: Ed25519PublicKey) -> dict[str, str]:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    members = {"crv": "Ed25519", "kty": "OKP", "x": _b64(raw)}
    thumbprint = _b64(hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest())
    return {**members, "kid": thumbprint, "alg": ALGORITHM, "use": "sig"}


def valid_for(value: Any) -> int:
    if value is None:
        return DEFAULT_VALID_S
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VALID_S:
        raise ValidationError(f'"validForSecs" must be an integer from 1 to {MAX_VALID_S}')
    return value


@dataclass(frozen=True, slots=True)
class Verified:
    serial: str
    claims: dict[str, Any]


class DeviceTokenService:
    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._key: Ed25519PrivateKey | None = None

    @property
    def key(self) -> Ed25519PrivateKey:
        if self._key is None:
            self._key = load_key(self._settings.data_dir)
        return self._key

    def jwks(self) -> dict[str, Any]:
        return {"keys": [jwk(self.key.public_key())]}

    async def issue(self, serial: str, typ: str, valid_for_s: int, extra: dict[str, Any]) -> str:
        device = await self._store.devices.get(serial)
        if device is None:
            raise DeviceNotFound(serial)
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "sub": device.serial,
            "tid": device.tenant,  # the owner, so a validator offline sees whose device it is
            "typ": typ,
            "dct": device.created_at,
            "iat": now,
            "exp": now + valid_for_s,
            **extra,
        }
        headers = {"kid": jwk(self.key.public_key())["kid"]}
        return jwt.encode(payload, self.key, algorithm=ALGORITHM, headers=headers)

    def decode(self, token: Any, typ: str, *, verify_exp: bool = True) -> dict[str, Any] | None:
        """The claims of a token this key signed for `typ`, else None (`verify` checks that `tid`
        is the device's tenant)."""
        if not isinstance(token, str):
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key.public_key(),
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub"], "verify_exp": verify_exp},
            )
        except jwt.PyJWTError:
            return None
        if not isinstance(claims.get("tid"), str) or claims.get("typ") != typ:
            return None
        return claims

    async def verify(self, token: Any, typ: str) -> Verified | None:
        claims = self.decode(token, typ)
        if claims is None:
            return None
        device = await self._store.devices.get(str(claims["sub"]))
        if device is None or device.created_at != claims.get("dct") or device.tenant != claims["tid"]:
            return None
        return Verified(device.serial, claims)
