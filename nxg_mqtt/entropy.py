"""`random_bytes(n)`: bytes from the system's random source, read 4 KiB at a time.

Every REST request gets a fresh request id (16 bytes) and every command a fresh id (8 bytes);
`os.urandom` is a system call each, about 2 % of a REST command's CPU under load. Reading the
same source in 4 KiB blocks and handing out slices gives identical randomness (every byte is
used once) at a fraction of the cost. A forked child starts with an empty block, so parent and
child never hand out the same bytes.
"""

from __future__ import annotations

import os

BLOCK = 4096

_block = b""
_at = 0


def random_bytes(n: int) -> bytes:
    """`n` bytes from `os.urandom`, never handed out twice."""
    global _block, _at
    if n > BLOCK // 4:
        return os.urandom(n)
    end = _at + n
    if end > len(_block):
        _block, _at, end = os.urandom(BLOCK), 0, n
    out = _block[_at:end]
    _at = end
    return out


def _forget() -> None:
    global _block, _at
    _block, _at = b"", 0


os.register_at_fork(after_in_child=_forget)
