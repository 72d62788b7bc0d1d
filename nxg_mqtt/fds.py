"""`presize_fd_table()`: grow the process's file-descriptor table once, before connections arrive.

Linux grows a process's descriptor table by doubling it (64, 128, 256, …) when a new descriptor
does not fit. In a process with several threads (the database and history threads here) each
growth waits for an RCU grace period inside `accept4` (`expand_files` → `synchronize_rcu`): the
event loop's thread sleeps 10-30 ms, with every connection's traffic behind it. A CONNECT storm
from ~200 to ~700 connections crossed 256 and 512 and showed exactly those two stalls
(`perf record -e sched:sched_switch -g`: state D in `accept4 … expand_files`), and they set the
storm's p99. The table never shrinks, so one growth at start-up, to what the descriptor limit
allows, takes those stalls out of the serving path for good. It costs 8 bytes a slot
(512 KiB at the 65,536 cap).
"""

from __future__ import annotations

import fcntl
import os
import resource

CAP = 65_536  # slots at most: a higher limit (some systems allow a million) would only cost memory


def presize_fd_table(cap: int = CAP) -> int:
    """Make room for descriptors up to min(the soft RLIMIT_NOFILE, `cap`) now; the new table size
    (0 if nothing was done). F_DUPFD takes the lowest free descriptor at or above the target, so no
    open descriptor is ever replaced."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = cap if soft == resource.RLIM_INFINITY else min(soft, cap)
    if limit <= 64:  # the table's first size: nothing to grow
        return 0
    probe = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        high = fcntl.fcntl(probe, fcntl.F_DUPFD_CLOEXEC, limit - 1)
    except OSError:  # the highest slot is taken, or the limit moved: the table is as it is
        return 0
    finally:
        os.close(probe)
    os.close(high)
    return limit
