"""Secrets: connection codes, serials, device tokens, password hashing.

Codes are Crockford base32 (no I, L, O, U), 8 characters = 40 bits, shown `XXXX-XXXX`;
input is case-insensitive, the dash optional, and the look-alikes I/L → 1, O → 0 are folded.
Tokens carry 32 random bytes; only their SHA-256 is stored. The admin password is stored as
PBKDF2-SHA256 with a per-password salt.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_FOLD = str.maketrans({"I": "1", "L": "1", "O": "0"})
TOKEN_PREFIX = "nxgt_"
PBKDF2_ITERATIONS = 200_000


def random_crockford(length: int) -> str:
    return "".join(secrets.choice(CROCKFORD) for _ in range(length))


def new_code() -> str:
    """A fresh connection code in its canonical stored form (8 chars, no dash)."""
    return random_crockford(8)


def normalize_code(text: str) -> str | None:
    """Canonical form of user input, or None if it cannot be a code."""
    cleaned = text.strip().upper().replace("-", "").replace(" ", "").translate(_FOLD)
    if len(cleaned) != 8 or any(ch not in CROCKFORD for ch in cleaned):
        return None
    return cleaned


def format_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def new_serial() -> str:
    return "NXG-" + random_crockford(8)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def tokens_equal(stored_hash: str, token: str) -> bool:
    return hmac.compare_digest(stored_hash, token_hash(token))


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PBKDF2_ITERATIONS)
    return f"pbkdf2_sha256${PBKDF2_ITERATIONS}${salt.hex()}${digest.hex()}"


def verify_password(stored: str, password: str) -> bool:
    try:
        scheme, iterations, salt_hex, digest_hex = stored.split("$")
    except ValueError:
        return False
    if scheme != "pbkdf2_sha256":
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt_hex), int(iterations))
    return hmac.compare_digest(digest.hex(), digest_hex)
