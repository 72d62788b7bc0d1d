"""Settings: one frozen object, built at the edge (CLI flags / `NXG_*` environment) and passed down.

Nothing below the CLI reads the environment; every component takes the settings it needs.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("./nxg-data")
    host: str = "0.0.0.0"
    mqtt_port: int = 1883
    ws_port: int | None = 8083  # MQTT over WebSocket; None = no listener
    http_port: int = 8080
    admin_password: str | None = None  # replaces the stored one when given
    internal_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    allow_anonymous: bool = False  # standalone broker only, for conformance testing
    tenant_id: str = "default"

    # payload and protocol limits
    max_payload_bytes: int = 16 * 1024
    max_packet_bytes: int = 256 * 1024
    max_manifest_bytes: int = 64 * 1024

    # sessions
    session_queue_limit: int = 1000  # messages per offline/slow session before the drop policy
    device_keepalive_zero_s: int = 1200  # keepalive 0 from a device is treated as this
    pairing_session_s: float = 60.0
    connect_timeout_s: float = 10.0  # time to send CONNECT after the TCP connect

    # brute-force protection on connection codes (per source address and global)
    pair_failures_per_minute: int = 10
    pair_lockout_s: float = 300.0
    pair_global_failures_per_minute: int = 300
    connect_failures_per_minute: int = 30  # any failed CONNECT, per source address
    # wrong admin passwords on REST and WebSocket upgrades, per source address; past it: 429 (0 = off)
    admin_failures_per_minute: int = 10

    # ingest
    batch_window_ms: int = 50
    batch_max_rows: int = 2000
    history_retention_days: int = 30

    # commands
    command_ack_timeout_s: float = 30.0
    command_ttl_s: float = 24 * 3600.0
    command_rate_limit: int = 300  # per tenant per minute, 0 = off
    command_queue_limit: int = 1000  # open (queued or dispatched) commands per device, 0 = no limit
    require_manifest: bool = False
    dry_run_token_s: float = 60.0  # how long a critical action's dry-run token may be confirmed

    # cross-process changes (CLI → running server)
    signal_poll_s: float = 0.25

    # bridge
    ws_ping_interval_s: float = 30.0
    ws_pong_timeout_s: float = 90.0
    ws_queue_limit: int = 1000
    ws_max_frame_bytes: int = 64 * 1024
    public_host: str | None = None  # host written into config.h; default: this machine's name

    @property
    def db_path(self) -> Path:
        return self.data_dir / "nxg.sqlite3"

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


_ENV_PREFIX = "NXG_"


def _coerce(value: str, target: Any) -> Any:
    kind = type(target)
    if isinstance(target, bool):
        return value.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(target, int):
        return int(value)
    if isinstance(target, float):
        return float(value)
    if isinstance(target, Path):
        return Path(value)
    if target is None:
        return value
    return kind(value)


def settings_from_env(env: Mapping[str, str] | None = None, base: Settings | None = None) -> Settings:
    """Overlay `NXG_<FIELD>` variables (e.g. `NXG_ADMIN_PASSWORD`, `NXG_DATA_DIR`) on `base`."""
    env = os.environ if env is None else env
    base = base or Settings()
    changes: dict[str, Any] = {}
    for f in fields(Settings):
        raw = env.get(_ENV_PREFIX + f.name.upper())
        if raw is None:
            continue
        current = getattr(base, f.name)
        if f.name == "ws_port":
            changes[f.name] = None if raw.strip() in ("", "none", "off") else int(raw)
        else:
            changes[f.name] = _coerce(raw, current)
    return replace(base, **changes)
