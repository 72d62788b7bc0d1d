"""Settings: one frozen object, built at the edge (CLI flags / `NXG_*` environment) and passed down.

Nothing below the CLI reads the environment; every component takes the settings it needs.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import Any, get_type_hints

from nxg_mqtt.errors import SettingError


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
    # the server's own link (the `bridge` login) carries every device's traffic to apps: a burst of
    # 1,000 commands is 2,000+ messages to it at once, so it gets a far larger bound than a device
    bridge_queue_limit: int = 100_000
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

    # HTTP proxy to devices (seed 003): the longest wait for a device's answer, the largest body
    proxy_timeout_s: float = 10.0
    proxy_max_body_bytes: int = 64 * 1024
    # firmware OTA: the largest binary an admin may upload
    firmware_max_bytes: int = 32 * 1024 * 1024
    # fault injection for tests of resumable downloads: a download response that starts at byte 0
    # is cut after this many bytes (0 = off); ranged (resumed) responses are never cut
    firmware_cut_at_bytes: int = 0

    # cross-process changes (CLI → running server)
    signal_poll_s: float = 0.25

    # bridge
    ws_ping_interval_s: float = 30.0
    ws_pong_timeout_s: float = 90.0
    ws_queue_limit: int = 1000
    ws_max_frame_bytes: int = 64 * 1024
    public_host: str | None = None  # host written into config.h; default: this machine's name

    # TLS (all listeners): on when tls_cert and tls_key are given
    tls_cert: Path | None = None  # PEM certificate chain
    tls_key: Path | None = None  # PEM private key
    # CA that signed tls_cert: written into config.h for devices; the TLS listeners also ask clients
    # for a certificate signed by it (optional: a device may still log in by token)
    tls_ca: Path | None = None
    mqtts_port: int = 8883  # MQTT over TLS
    wss_port: int | None = 8084  # MQTT over secure WebSocket; None = no listener
    plain: bool = True  # with TLS on, False turns the plain MQTT and MQTT/WebSocket listeners off

    # metrics: False skips the per-message counting behind GET /metrics (to measure what it costs)
    metrics: bool = True
    # another broker instead of the embedded one (README "Scaling out"): `mosquitto` runs
    # Mosquitto as a child with mosquitto.conf, `external` uses one someone else runs (`serve --mqtt`);
    # both reach the core's auth/ACL/presence decisions through the hook listener
    broker: str = "embedded"
    mosquitto_bin: Path = Path("/usr/sbin/mosquitto")
    hook_host: str = "127.0.0.1"  # the internal HTTP hooks (/mqtt/auth, /mqtt/acl, ...): loopback by default
    hook_port: int = 0  # 0 = any free port (Mosquitto's generated config names it); EMQX needs a fixed one
    # --broker external: this process's hooks are the ones an operator's Mosquitto (with the NXG
    # plugin) calls, so it takes the plugin's connect/disconnect reports ($nxg/connected, ...);
    # exactly one process on a broker may (presence would be counted twice). --broker mosquitto: on
    hook_reports: bool = False

    # logs
    log_level: str = "info"
    log_format: str = "text"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "nxg.sqlite3"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


_ENV_PREFIX = "NXG_"


TRUE = ("true", "1", "yes")
FALSE = ("false", "0", "no")
OFF = ("", "none", "off")  # an optional port switched off
CHOICES = {
    "broker": ("embedded", "mosquitto", "external"),
    "log_level": ("debug", "info", "warning", "error"),
    "log_format": ("text", "json"),
}
_PORTS = {"mqtt_port", "ws_port", "http_port", "mqtts_port", "wss_port", "hook_port"}


@cache
def setting_types() -> dict[str, str]:
    """Setting name → its type as written in the dataclass (`"int"`, `"Path | None"`, …)."""
    hints = get_type_hints(Settings)
    return {f.name: str(f.type) if isinstance(f.type, str) else repr(hints[f.name]) for f in fields(Settings)}


def parse_setting(name: str, raw: Any, where: str) -> Any:
    """One setting's value from text (flags, env) or a TOML value, checked; else SettingError.

    `where` names the source in the message (`NXG_MQTT_PORT`, `nxg.toml: mqtt_port`, `--mqtt-port`).
    """
    kind = setting_types()[name]
    optional = kind.endswith("| None")
    base = kind.removesuffix(" | None")
    text = raw.strip() if isinstance(raw, str) else None

    def bad(allowed: str) -> SettingError:
        return SettingError(f"{where}: {raw!r} is not allowed; expected {allowed}", details={"setting": name})

    if optional and (raw is False or (text is not None and text.lower() in OFF)):
        return None
    if base == "bool":
        if isinstance(raw, bool):
            return raw
        if text is not None and text.lower() in TRUE + FALSE:
            return text.lower() in TRUE
        raise bad("one of true, false, 1, 0, yes, no")
    if base in ("int", "float"):
        number: int | float
        try:
            if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
                raise ValueError
            number = int(raw) if base == "int" and not isinstance(raw, float) else float(raw)
            if base == "int" and isinstance(raw, float):
                raise ValueError
        except ValueError:
            what = "a whole number" if base == "int" else "a number"
            raise bad(what + (" or off" if optional else "")) from None
        if name in _PORTS and not 0 <= number <= 65535:
            raise bad("a port from 0 to 65535" + (" or off" if optional else ""))
        if number < 0 or number != number:
            raise bad("a number ≥ 0")
        return number
    if not isinstance(raw, str):
        raise bad("text")
    if name in CHOICES:
        if text is None or text.lower() not in CHOICES[name]:
            raise bad("one of " + ", ".join(CHOICES[name]))
        return text.lower()
    return Path(raw) if base == "Path" else raw


def settings_from_env(env: Mapping[str, str] | None = None, base: Settings | None = None) -> Settings:
    """Overlay `NXG_<FIELD>` variables (e.g. `NXG_ADMIN_PASSWORD`, `NXG_DATA_DIR`) on `base`."""
    env = os.environ if env is None else env
    base = base or Settings()
    changes: dict[str, Any] = {}
    for f in fields(Settings):
        name = env_name(f.name)
        raw = env.get(name)
        if raw is not None:
            changes[f.name] = parse_setting(f.name, raw, name)
    return replace(base, **changes)


def env_name(setting: str) -> str:
    return _ENV_PREFIX + setting.upper()
