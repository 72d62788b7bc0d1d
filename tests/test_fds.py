"""presize_fd_table: the descriptor table grown once, up front, and nothing open disturbed."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import os, resource, sys
from nxg_mqtt.fds import presize_fd_table

def fd_size():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("FDSize:"))

soft = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
r, w = os.pipe()
before = fd_size()
grown = presize_fd_table(cap=int(sys.argv[2]))
os.write(w, b"still open")
print(before, grown, fd_size(), os.read(r, 64).decode(), len(os.listdir("/proc/self/fd")))
"""


def probe(soft: int, cap: int) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(soft), str(cap)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split(maxsplit=3)


def test_the_table_is_grown_to_the_descriptor_limit_and_open_descriptors_stay() -> None:
    before, grown, after, rest = probe(4096, 65_536)
    assert int(before) < 4096 and int(grown) == 4096 and int(after) >= 4096
    assert rest.startswith("still open")
    # the probe descriptor and the high duplicate are closed again: stdin/out/err, the pipe, listdir's own
    assert int(rest.split()[-1]) <= 6


def test_the_cap_bounds_the_table_whatever_the_limit() -> None:
    _, grown, after, _ = probe(20_000, 1_024)
    assert int(grown) == 1_024 and 1_024 <= int(after) < 2_048


def test_a_limit_within_the_first_table_changes_nothing() -> None:
    before, grown, after, _ = probe(64, 65_536)
    assert int(grown) == 0 and after == before
