"""Where settings come from: defaults < config file (TOML) < `NXG_*` environment < flags.

Used by the CLI only (the edge). Every field of `Settings` is reachable from all three: the file
uses the field name (`mqtt_port = 1883`), the environment `NXG_<NAME>`, the command line
`--<name>` (a few keep their historic shorter names, `FLAGS`). Every value goes through
`settings.parse_setting`, so a bad one is refused with the same one-line message wherever it came from.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from nxg_mqtt.errors import SettingError
from nxg_mqtt.settings import Settings, env_name, parse_setting, setting_types

# settings whose flag is not `--<name-with-dashes>`
FLAGS = {
    "data_dir": "--data",
    "ws_ping_interval_s": "--ws-ping-interval",
    "ws_pong_timeout_s": "--ws-pong-timeout",
    "command_ack_timeout_s": "--command-ack-timeout",
}
# optional settings whose `--no-…` flag has a name of its own
OFF_FLAGS = {"ws_port": "--no-ws", "wss_port": "--no-wss"}
SECRETS = frozenset({"admin_password", "internal_secret"})
HELP = {
    "broker": "embedded, mosquitto (a child Mosquitto with mosquitto.conf) or external (serve --mqtt URL)",
    "mosquitto_bin": "the Mosquitto 2 executable for --broker mosquitto",
    "hook_host": "address of the internal auth/ACL/presence hooks for another broker",
    "hook_port": "port of those hooks (0 = any free)",
    "hook_reports": "--broker external: take the Mosquitto plugin's connect/disconnect reports (one process)",
    "data_dir": "data directory",
    "host": "address to listen on",
    "mqtt_port": "MQTT TCP port (0 = any free)",
    "ws_port": "MQTT over WebSocket port",
    "http_port": "HTTP/WebSocket port of the bridge (HTTPS with TLS on)",
    "admin_password": "admin password; replaces the stored one",
    "internal_secret": "the broker's internal secret (default: from the data dir)",
    "public_host": "host name written into config.h",
    "tls_cert": "PEM certificate (chain): turns TLS on for every listener, with --tls-key",
    "tls_key": "PEM private key of --tls-cert",
    "tls_ca": "CA certificate written into config.h (devices verify the server with it); the MQTT/TLS"
    " listener also asks clients for a certificate it signed (optional: mTLS login, seed 003)",
    "mqtts_port": "MQTT over TLS port (with TLS on)",
    "wss_port": "MQTT over secure WebSocket port (with TLS on)",
    "plain": "with TLS on, keep the plain MQTT and MQTT/WebSocket listeners (--no-plain: TLS only)",
    "log_level": "debug, info, warning or error",
    "log_format": "text or json (one object a line)",
    "bridge_queue_limit": "messages queued for the server's own link (the bridge login) before the drop policy",
    "command_queue_limit": "open commands per device before QUEUE_FULL (0 = none)",
    "command_rate_limit": "commands per tenant per minute (0 = off)",
    "command_ack_timeout_s": "seconds to wait for a device's ack",
    "ws_ping_interval_s": "gateway ping interval, s",
    "ws_pong_timeout_s": "gateway pong timeout, s",
    "firmware_max_bytes": "largest firmware binary an admin may upload, bytes",
    "proxy_timeout_s": "HTTP proxy to devices: longest wait for a device's answer before 504, s",
    "proxy_max_body_bytes": "HTTP proxy to devices: largest request or response body, bytes",
    "firmware_cut_at_bytes": "testing aid: cut every unranged firmware download after N bytes (0 = off)",
    "allow_anonymous": "accept clients without credentials (standalone broker, conformance testing only)",
    "tenant_id": "tenant of this installation (every row is stored under it)",
    "max_payload_bytes": "largest device payload accepted, bytes",
    "max_packet_bytes": "largest MQTT packet accepted, bytes",
    "max_manifest_bytes": "largest device manifest accepted, bytes",
    "session_queue_limit": "messages held per offline or slow session before the drop policy",
    "device_keepalive_zero_s": "keepalive assumed when a device sends keepalive 0, s",
    "pairing_session_s": "how long a pairing connection may stay open, s",
    "connect_timeout_s": "time allowed to send CONNECT after the TCP connect, s",
    "pair_failures_per_minute": "wrong connection codes per source address per minute before a lockout",
    "pair_lockout_s": "how long a source address is locked out of pairing, s",
    "pair_global_failures_per_minute": "wrong connection codes per minute from all addresses together",
    "connect_failures_per_minute": "failed CONNECTs per source address per minute before refusals",
    "admin_failures_per_minute": "wrong admin passwords per source address per minute before 429 (0 = off)",
    "batch_window_ms": "longest wait before pending history is written (group commit), ms",
    "batch_max_rows": "pending history rows that start a write at once",
    "history_retention_days": "days of history kept (0 = forever)",
    "command_ttl_s": "how long a queued command waits for its device, s",
    "require_manifest": "refuse commands to devices that sent no manifest",
    "dry_run_token_s": "how long a critical action's dry-run token may be confirmed, s",
    "signal_poll_s": "how often a running server picks up changes made with the CLI, s",
    "ws_queue_limit": "messages queued per /ws/app socket before it is marked overflowed",
    "ws_max_frame_bytes": "largest WebSocket frame accepted by the bridge, bytes",
    "metrics": "count messages in and out by channel for GET /metrics (--no-metrics: not counted)",
}
README_BEGIN = "<!-- settings table: generated by `python -m nxg_mqtt.config --readme README.md` -->"
README_END = "<!-- end of settings table -->"


def flag_of(name: str) -> str:
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def _dest(name: str) -> str:
    return "setting_" + name


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="TOML config file (env NXG_CONFIG)")


def add_data_flag(parser: argparse.ArgumentParser) -> None:
    """`--data` (and `--config`) alone: for the administration commands."""
    add_config_flag(parser)
    parser.add_argument("--data", dest=_dest("data_dir"), default=argparse.SUPPRESS, help="data directory")


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for every setting (booleans and optional ports also get `--no-…`); values stay text
    until `resolve` checks them, so a bad flag gets the same message as a bad variable."""
    add_config_flag(parser)
    defaults = Settings()
    group = parser.add_argument_group("settings (flags > NXG_* environment > --config file > defaults)")
    for f in fields(Settings):
        kind = setting_types()[f.name]
        default = "(generated)" if f.name in SECRETS else getattr(defaults, f.name)
        # SUPPRESS: a subcommand's flag never hides the same flag given before the subcommand
        common: dict[str, Any] = {"dest": _dest(f.name), "default": argparse.SUPPRESS}
        text = f"{HELP.get(f.name, f.name.replace('_', ' '))} (default {default}; env {env_name(f.name)})"
        if kind == "bool":
            group.add_argument(flag_of(f.name), action="store_const", const="true", help=text, **common)
            no = "--no-" + f.name.replace("_", "-")
            group.add_argument(no, action="store_const", const="false", help=argparse.SUPPRESS, **common)
            continue
        group.add_argument(flag_of(f.name), metavar="VALUE", help=text, **common)
        if kind.endswith("| None") and f.name.endswith("_port"):
            no = OFF_FLAGS.get(f.name, "--no-" + f.name.replace("_", "-"))
            group.add_argument(no, action="store_const", const="off", help=f"no {f.name} listener", **common)


def flag_values(args: argparse.Namespace) -> dict[str, str]:
    """The settings given as flags (text), by setting name."""
    return {f.name: value for f in fields(Settings) if (value := getattr(args, _dest(f.name), None)) is not None}


def load_file(path: Path) -> dict[str, Any]:
    """The settings in a TOML file, checked: unknown names and bad values are SettingError."""
    try:
        with path.open("rb") as fh:
            document = tomllib.load(fh)
    except OSError as exc:
        raise SettingError(f"--config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingError(f"--config {path}: not valid TOML ({exc})") from None
    known = setting_types()
    values: dict[str, Any] = {}
    for key, raw in document.items():
        name = key.replace("-", "_")
        if name not in known:
            raise SettingError(f"{path.name}: unknown setting {key!r} (nxg-mqtt config show lists them)")
        if isinstance(raw, str) and known[name].removesuffix(" | None") == "Path":
            raw = str((path.parent / raw).expanduser()) if not Path(raw).is_absolute() else raw
        values[name] = parse_setting(name, raw, f"{path.name}: {key}")
    return values


def resolve(config: Path | None, env: Mapping[str, str], flags: Mapping[str, str]) -> tuple[Settings, dict[str, str]]:
    """The settings and, for each, where its value came from (`default`, `file`, `env`, `flag`)."""
    changes: dict[str, Any] = {}
    sources = {f.name: "default" for f in fields(Settings)}
    if config is None and env.get("NXG_CONFIG"):
        config = Path(env["NXG_CONFIG"])
    if config is not None:
        for name, value in load_file(config).items():
            changes[name], sources[name] = value, "file"
    for f in fields(Settings):
        raw = env.get(env_name(f.name))
        if raw is not None:
            changes[f.name], sources[f.name] = parse_setting(f.name, raw, env_name(f.name)), "env"
    for name, raw in flags.items():
        changes[name], sources[name] = parse_setting(name, raw, flag_of(name)), "flag"
    settings = replace(Settings(), **changes)
    check(settings)
    return settings, sources


def check(settings: Settings) -> None:
    """Rules across settings, refused before anything starts."""
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise SettingError("--tls-cert and --tls-key go together: give both or neither")
    for name in ("tls_cert", "tls_key", "tls_ca"):
        path = getattr(settings, name)
        if path is not None and not path.is_file():
            raise SettingError(f"{flag_of(name)}: {str(path)!r} is not a readable file")
    if settings.tls_ca is not None and not settings.tls:
        raise SettingError("--tls-ca needs --tls-cert and --tls-key")
    if not settings.plain and not settings.tls:
        raise SettingError("--no-plain needs TLS (--tls-cert and --tls-key): no listener would be left")


def show(settings: Settings, sources: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Every setting: value, default, where the value came from, its variable and flag."""
    defaults = asdict(Settings())
    listed: dict[str, dict[str, Any]] = {}
    for f in fields(Settings):
        value, default = getattr(settings, f.name), defaults[f.name]
        if f.name in SECRETS:
            value = None if value is None else "(set)"
            default = "(generated)" if f.name == "internal_secret" else None
        listed[f.name] = {
            "value": str(value) if isinstance(value, Path) else value,
            "default": str(default) if isinstance(default, Path) else default,
            "source": sources[f.name],
            "env": env_name(f.name),
            "flag": flag_of(f.name),
        }
    return listed


def _shown(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def settings_table() -> str:
    """Every setting as a Markdown table (the README's, kept equal by tests/test_config.py)."""
    defaults = Settings()
    rows = [
        "| setting (TOML key) | flag | environment | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for f in fields(Settings):
        default = "(generated)" if f.name in SECRETS else _shown(getattr(defaults, f.name))
        flag = flag_of(f.name)
        kind = setting_types()[f.name]
        if kind == "bool":
            flag += " / --no-" + f.name.replace("_", "-")
        elif kind.endswith("| None") and f.name.endswith("_port"):
            flag += " / " + OFF_FLAGS.get(f.name, "--no-" + f.name.replace("_", "-"))
        meaning = HELP[f.name].replace("|", "\\|")
        rows.append(f"| `{f.name}` | `{flag}` | `{env_name(f.name)}` | `{default}` | {meaning} |")
    return "\n".join(rows) + "\n"


def with_settings_table(readme: str) -> str:
    """`readme` with the text between the settings table markers replaced by `settings_table()`."""
    start, end = readme.find(README_BEGIN), readme.find(README_END)
    if start < 0 or end < start:
        raise ValueError("the README has no settings table markers")
    return readme[: start + len(README_BEGIN)] + "\n\n" + settings_table() + "\n" + readme[end:]


if __name__ == "__main__":  # python -m nxg_mqtt.config [--readme README.md]: print or rewrite the table
    import sys

    if sys.argv[1:2] == ["--readme"]:
        target = Path(sys.argv[2])
        target.write_text(with_settings_table(target.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(settings_table(), end="")
