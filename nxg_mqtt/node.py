"""This broker process's cluster node id (seed 003's `nodeId`): stable per data directory.

Kept in `{data_dir}/node_id`, written once; several serving processes on external brokers each
have their own data directory, so each names itself.
"""

from __future__ import annotations

import secrets
from pathlib import Path

NODE_FILE = "node_id"


def node_id(data_dir: Path) -> str:
    path = data_dir / NODE_FILE
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    data_dir.mkdir(parents=True, exist_ok=True)
    fresh = "node-" + secrets.token_hex(8)
    try:
        # O_EXCL: two processes starting on one directory agree on the first one written
        with path.open("x", encoding="utf-8") as fh:
            fh.write(fresh + "\n")
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip() or fresh
    return fresh
