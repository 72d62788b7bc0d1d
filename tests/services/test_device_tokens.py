"""Device JWTs: the signing key lives in the data directory (tokens survive a restart and every
process on the directory agrees), the public key is a JWKS, and the claims bind tenant and device."""

from __future__ import annotations

import stat
from pathlib import Path

import jwt

from nxg_mqtt.core import open_core
from nxg_mqtt.services.device_tokens import KEY_FILE, TokenType
from tests.factories import make_settings


async def test_key_survives_restarts_and_is_private(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with open_core(settings) as core:
        await core.devices.create("jw-1")
        token = await core.tokens.issue("jw-1", TokenType.DEVICE, 60, {"claims": {"a": 1}})
        jwks = core.tokens.jwks()
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    async with open_core(settings) as again:
        verified = await again.tokens.verify(token, TokenType.DEVICE)
        assert verified is not None and verified.serial == "jw-1" and verified.claims["claims"] == {"a": 1}
        assert again.tokens.jwks() == jwks
        assert await again.tokens.verify(token, TokenType.HTTP_PROXY) is None
    # another data directory is another key: its tokens are not ours
    async with open_core(make_settings(tmp_path / "other")) as foreign:
        await foreign.devices.create("jw-1")
        assert await foreign.tokens.verify(token, TokenType.DEVICE) is None
    key = jwt.PyJWK(jwks["keys"][0]).key
    assert jwt.decode(token, key, algorithms=["EdDSA"], options={"verify_aud": False})["sub"] == "jw-1"
