"""`nxg_mqtt.entropy.random_bytes`: every byte of the system source is handed out once, in any
request size, across block boundaries, and a forked child never repeats its parent's bytes."""

from __future__ import annotations

import os

from nxg_mqtt import entropy
from nxg_mqtt.entropy import BLOCK, random_bytes


def test_sizes_and_no_repeats_across_blocks() -> None:
    chunks = [random_bytes(n) for n in [8, 16, 7, 1] * (BLOCK // 8)]
    assert [len(c) for c in chunks] == [8, 16, 7, 1] * (BLOCK // 8)
    sixteen = [c for c in chunks if len(c) == 16]
    assert len(set(sixteen)) == len(sixteen)  # 2^-128 per pair by chance
    assert len(random_bytes(BLOCK)) == BLOCK  # larger than a slice: straight from the source


def test_a_forked_child_starts_a_block_of_its_own() -> None:
    entropy._forget()
    random_bytes(8)  # a fresh block is in use here
    left = entropy._block[entropy._at : entropy._at + 16]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what it hands out next
        os.write(write, random_bytes(16))
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 16 and child != left
    assert random_bytes(16) == left  # the parent goes on where it was
