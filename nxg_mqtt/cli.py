"""`nxg-mqtt`: run the broker, the bridge or both, and administer devices on a data directory.

This is the edge: the only place that reads flags and `NXG_*` environment variables. Everything
below receives a frozen `Settings`.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlparse

from nxg_mqtt import __version__, config, logs
from nxg_mqtt.core import Core, open_core
from nxg_mqtt.errors import DryRunRequired, NxgError, SettingError, ValidationError
from nxg_mqtt.fds import presize_fd_table
from nxg_mqtt.protocol import DEFAULT_TENANT_SLUG, MessageType
from nxg_mqtt.services import credentials
from nxg_mqtt.services.history import DEFAULT_LIMIT as HISTORY_DEFAULT_LIMIT
from nxg_mqtt.services.history import MAX_LIMIT as HISTORY_MAX_LIMIT
from nxg_mqtt.services.history import history_query
from nxg_mqtt.settings import Settings

log = logging.getLogger("nxg_mqtt")

EXIT_TRY_LATER = 75  # EX_TEMPFAIL: QUEUE_FULL, RATE_LIMIT_EXCEEDED (429): the same request may work later


# ---- settings at the edge ---------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Mistakes on the command line are one line (no usage dump), like every other refusal."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def _build_settings(args: argparse.Namespace) -> tuple[Settings, dict[str, str]]:
    config_file = getattr(args, "config", None)
    settings, sources = config.resolve(Path(config_file) if config_file else None, os.environ, config.flag_values(args))
    if args.command == "broker" and sources["ws_port"] == "default":
        settings = replace(settings, ws_port=None, wss_port=None)  # the standalone broker: MQTT only unless asked
    if args.verbose and sources["log_level"] == "default":
        settings = replace(settings, log_level="debug")
    if sources["internal_secret"] == "default" and args.command != "config":
        settings = settings.with_overrides(internal_secret=_stored_internal_secret(settings.data_dir))
    return settings, sources


def _stored_internal_secret(data_dir: Path) -> str:
    """The broker and a separate bridge on one data directory share the internal secret."""
    path = data_dir / "internal_secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    return secret


async def ensure_admin_password(core: Core) -> str | None:
    """Replace the stored hash with `admin_password` if given; generate one on first start.

    Returns the password when it was generated here (to print once), else None.
    """
    return await core.admin.ensure(core.settings.admin_password)


# ---- running ----------------------------------------------------------------------------------


def _run(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        import uvloop

        uvloop.run(runner())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(runner())


def _display_host(settings: Settings) -> str:
    return settings.public_host or ("127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host)


def _say(line: str) -> None:
    print(line, flush=True)


async def _serve(settings: Settings, stop: asyncio.Event, mqtt_url: str | None = None) -> None:
    from bridge.server import open_bridge

    presize_fd_table()  # connections never wait for the descriptor table to grow (nxg_mqtt.fds)
    if settings.broker != "embedded":
        await _serve_foreign(settings, stop, mqtt_url)
        return
    from nxg_mqtt.broker.embedded import open_broker, tune_gc

    async with open_core(settings, serve=True) as core:
        generated = await ensure_admin_password(core)
        async with open_broker(core) as broker:
            tune_gc()
            # port 0 means "any": the bridge (config.h, /api/protocol) must show the bound ports
            bound = replace(
                settings,
                mqtt_port=broker.mqtt_port,
                ws_port=broker.ws_port,
                mqtts_port=broker.mqtts_port or settings.mqtts_port,
                wss_port=broker.wss_port,
            )
            async with open_bridge(bound, core, "127.0.0.1", broker.mqtt_port) as bridge:
                host = _display_host(settings)
                web, ws = (bridge.scheme, "wss" if bridge.scheme == "https" else "ws")
                _reload_on_sighup(broker.reload_tls, bridge.reload_tls)
                _say("NXG MQTT is running (Ctrl-C to stop)")
                _say(f"  Portal          {web}://{host}:{bridge.http_port}/   <- open this first")
                if settings.plain or not settings.tls:
                    _say(f"  MQTT            mqtt://{host}:{broker.mqtt_port}")
                if broker.mqtts_port is not None:
                    _say(f"  MQTT/TLS        mqtts://{host}:{broker.mqtts_port}")
                if broker.ws_port is not None:
                    _say(f"  MQTT/WebSocket  ws://{host}:{broker.ws_port}/mqtt")
                if broker.wss_port is not None:
                    _say(f"  MQTT/WSS        wss://{host}:{broker.wss_port}/mqtt")
                _say(f"  HTTP            {web}://{host}:{bridge.http_port}/")
                _say(f"  App WebSocket   {ws}://{host}:{bridge.http_port}/ws/app")
                _say(f"  Gateway         {ws}://{host}:{bridge.http_port}/ws/gateway")
                await _say_rest_and_wait(settings, generated, stop)


async def _serve_foreign(settings: Settings, stop: asyncio.Event, mqtt_url: str | None) -> None:
    """`--broker mosquitto` (a child Mosquitto from mosquitto.conf) or `--broker external --mqtt URL`:
    the hooks answer the broker's auth/ACL/presence questions, the worker takes device traffic
    from shared subscriptions, the bridge serves HTTP as always (README "Scaling out")."""
    from nxg_mqtt.hooks.stack import open_foreign_stack

    owner = settings.broker == "mosquitto"
    broker_at = None if owner else broker_address(mqtt_url or "")
    async with open_foreign_stack(settings, broker_at, admin=False) as stack:
        generated = await ensure_admin_password(stack.core)
        shown = _display_host(settings)
        mqtt_host = shown if owner else stack.mqtt_host
        where = "Mosquitto" if owner else f"mqtt://{mqtt_host}:{stack.mqtt_port}"
        _say(f"NXG MQTT is running on {where} (Ctrl-C to stop)")
        _say(f"  Portal          http://{shown}:{stack.bridge.http_port}/   <- open this first")
        _say(f"  MQTT            mqtt://{mqtt_host}:{stack.mqtt_port}")
        if stack.ws_port is not None:
            _say(f"  MQTT/WebSocket  ws://{mqtt_host}:{stack.ws_port}/mqtt")
        _say(f"  HTTP            http://{shown}:{stack.bridge.http_port}/")
        _say(f"  App WebSocket   ws://{shown}:{stack.bridge.http_port}/ws/app")
        _say(f"  Gateway         ws://{shown}:{stack.bridge.http_port}/ws/gateway")
        _say(f"  Broker hooks    {stack.listener.url}/mqtt/auth (internal)")
        await _say_rest_and_wait(settings, generated, stop)


async def _say_rest_and_wait(settings: Settings, generated: str | None, stop: asyncio.Event) -> None:
    """The banner's last lines, the same for every broker, then run until Ctrl-C/SIGTERM."""
    _say(f"  Data            {settings.data_dir.resolve()}")
    if generated:
        _say(f"  Admin password  {generated}   (generated now, shown once; stored hashed)")
    else:
        _say("  Admin password  (as set; stored hashed)")
    await stop.wait()
    _say("stopping…")


def _reload_on_sighup(*reloaders: Callable[[], None]) -> None:
    """SIGHUP: load the TLS certificate and key again; connected clients keep their sessions."""

    def reload() -> None:
        try:
            for reloader in reloaders:
                reloader()
            log.info("TLS certificate reloaded")
        except (NxgError, OSError) as exc:
            log.error("TLS certificate not reloaded, the old one stays: %s", exc)

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)


async def _broker(settings: Settings, stop: asyncio.Event) -> None:
    from nxg_mqtt.broker.embedded import open_broker, tune_gc

    if settings.allow_anonymous:
        print(
            "WARNING: --allow-anonymous: clients without credentials may connect. For conformance"
            " testing only; never on a network.",
            file=sys.stderr,
            flush=True,
        )
    presize_fd_table()  # connections never wait for the descriptor table to grow (nxg_mqtt.fds)
    async with open_core(settings, serve=True) as core, open_broker(core) as broker:
        tune_gc()
        host = _display_host(settings)
        _say(f"NXG broker listening: mqtt://{host}:{broker.mqtt_port}")
        if broker.ws_port is not None:
            _say(f"NXG broker listening: ws://{host}:{broker.ws_port}/mqtt")
        await stop.wait()


def broker_address(mqtt_url: str) -> tuple[str, int]:
    """`mqtt://host:port` (or `tcp://`; port 1883 if left out) → (host, port); else INVALID_URL."""
    problem = f"--mqtt must look like mqtt://host:port, got {mqtt_url!r}"
    try:
        url = urlparse(mqtt_url)
        port = url.port  # ValueError for a port that is not a number or out of range
    except ValueError:
        raise ValidationError(problem, code="INVALID_URL") from None
    if url.scheme not in ("mqtt", "tcp") or not url.hostname or url.path not in ("", "/"):
        raise ValidationError(problem, code="INVALID_URL")
    return url.hostname, 1883 if port is None else port


async def _bridge(settings: Settings, mqtt_host: str, mqtt_port: int, stop: asyncio.Event) -> None:
    from bridge.server import open_bridge

    async with open_core(settings, writer=True) as core:
        generated = await ensure_admin_password(core)
        async with open_bridge(settings, core, mqtt_host, mqtt_port, embedded=False) as bridge:
            host = _display_host(settings)
            _say(f"NXG bridge on http://{host}:{bridge.http_port}/ (broker mqtt://{mqtt_host}:{mqtt_port})")
            if generated:
                _say(f"  Admin password  {generated}   (generated now, shown once; stored hashed)")
            await stop.wait()


# ---- administration ---------------------------------------------------------------------------


def _emit(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False), flush=True)


async def _admin(settings: Settings, action: Callable[[Core], Awaitable[Any]]) -> None:
    async with open_core(settings) as core:
        _emit(await action(core))


def _tenant_of(tenant_id: str, slugs: dict[str, str]) -> dict[str, Any]:
    """The tenant columns of `device list` / `key list` (and of what `create` made)."""
    return {"tenant_id": tenant_id, "tenant": slugs.get(tenant_id)}


async def _device(args: argparse.Namespace, core: Core) -> Any:
    devices = core.devices
    match args.device_command:
        case "create":
            tenant = await core.tenants.find(args.tenant)
            device = await devices.create(args.serial, args.name, actor="cli", tenant=tenant.id)
            return {
                **device.public(),
                **_tenant_of(device.tenant, {tenant.id: tenant.slug}),
                "code": credentials.format_code(device.code),
            }
        case "list":
            slugs = await core.tenants.slugs()
            return {"devices": [{**d.public(), **_tenant_of(d.tenant, slugs)} for d in await devices.list()]}
        case "show":
            device = await devices.get(args.serial)
            connections = await devices.connections(device.serial, limit=10)
            return {
                **device.public(),
                "connections": [
                    {
                        "transport": c.transport,
                        "remote": c.remote,
                        "connected_at": c.connected_at,
                        "ended_at": c.ended_at,
                        "reason": c.reason,
                    }
                    for c in connections
                ],
            }
        case "code":
            return {
                "serial": (await devices.get(args.serial)).serial,
                "code": await devices.code(args.serial),
            }
        case "reset":
            device = await devices.reset(args.serial, actor="cli")
            return {"serial": device.serial, "code": credentials.format_code(device.code)}
        case "regenerate":
            device = await devices.regenerate(args.serial, actor="cli")
            return {"serial": device.serial, "code": credentials.format_code(device.code)}
        case "delete":
            await devices.delete(args.serial, actor="cli")
            return {"ok": True}
    raise NxgError(f"unknown device command {args.device_command}")  # pragma: no cover


async def _cmd(args: argparse.Namespace, core: Core) -> Any:
    try:
        params = json.loads(args.params) if args.params else {}
    except json.JSONDecodeError as exc:
        raise NxgError(f"--params is not valid JSON: {exc.msg}", code="INVALID") from None
    if not isinstance(params, dict):
        raise NxgError("--params must be a JSON object", code="INVALID")
    command = await core.commands.submit(args.serial, args.action, args.target, params, source="cli", dispatch=False)
    return command.public()


async def _history(args: argparse.Namespace, core: Core) -> Any:
    # the arguments go to the core as typed: the same rules and messages as GET /api/history
    query = history_query(args.serial, args.type, args.limit, args.before)
    return (await core.history.query(query)).public()


async def _key(args: argparse.Namespace, core: Core) -> Any:
    keys = core.keys
    match args.key_command:
        case "create":
            tenant = await core.tenants.find(args.tenant)
            key, secret = await keys.create(
                args.name, args.role, args.scope, args.device, actor="cli", tenant=tenant.id
            )
            return {**key.public(), **_tenant_of(key.tenant, {tenant.id: tenant.slug}), "key": secret}
        case "list":
            slugs = await core.tenants.slugs()
            return {"keys": [{**k.public(), **_tenant_of(k.tenant, slugs)} for k in await keys.list()]}
        case "revoke":
            return (await keys.revoke(args.id, actor="cli")).public()
        case "rotate":
            key, secret = await keys.rotate(args.id, actor="cli")
            return {**key.public(), "key": secret}
    raise NxgError(f"unknown key command {args.key_command}")  # pragma: no cover


async def _audit(args: argparse.Namespace, core: Core) -> Any:
    if not 1 <= args.limit <= HISTORY_MAX_LIMIT:
        raise NxgError(f"--limit must be between 1 and {HISTORY_MAX_LIMIT}", code="INVALID")
    return {"entries": await core.store.audit.recent(args.limit, args.serial)}


# ---- argument parsing -------------------------------------------------------------------------


TENANT_HELP = "the owning tenant, by id or slug (default: the default tenant)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nxg-mqtt", description="NXG MQTT: an MQTT-native IoT backend.")
    parser.add_argument("--data", dest="setting_data_dir", help="data directory (default ./nxg-data, env NXG_DATA_DIR)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (--log-level debug)")
    parser.add_argument("--version", action="version", version=f"nxg-mqtt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    data_arg = config.add_data_flag

    serve = sub.add_parser("serve", help="run the embedded broker and the bridge (the default setup)")
    serve.add_argument("--mqtt", help="with --broker external: the broker, mqtt://host:port")
    config.add_setting_flags(serve)
    broker = sub.add_parser("broker", help="run the broker alone (MQTT/WebSocket only with --ws-port)")
    config.add_setting_flags(broker)
    bridge = sub.add_parser("bridge", help="run the bridge alone against a running broker")
    bridge.add_argument("--mqtt", required=True, help="the broker, mqtt://host:port")
    config.add_setting_flags(bridge)

    cert = sub.add_parser("cert", help="certificates")
    csub = cert.add_subparsers(dest="cert_command", required=True)
    dev = csub.add_parser("dev", help="a self-signed CA and a server certificate for local testing")
    dev.add_argument("--out", default="nxg-certs", help="directory (default ./nxg-certs)")
    dev.add_argument("--host", action="append", help="host name or address (repeatable; default localhost, 127.0.0.1)")

    settings = sub.add_parser("config", help="settings")
    ssub = settings.add_subparsers(dest="config_command", required=True)
    show = ssub.add_parser("show", help="every setting: value, default, where it came from, env variable, flag")
    config.add_setting_flags(show)

    device = sub.add_parser("device", help="manage devices")
    dsub = device.add_subparsers(dest="device_command", required=True)
    create = dsub.add_parser("create", help="register a device; prints its serial and connection code")
    data_arg(create)
    create.add_argument("--serial", help="serial (default: generated NXG-XXXXXXXX)")
    create.add_argument("--name")
    create.add_argument("--tenant", default=DEFAULT_TENANT_SLUG, help=TENANT_HELP)
    data_arg(dsub.add_parser("list", help="list devices"))
    for name, text in (
        ("show", "one device and its recent connections"),
        ("code", "the device's connection code"),
        ("reset", "invalidate the token (the code stays)"),
        ("regenerate", "a new connection code (the token stops working)"),
        ("delete", "delete the device permanently"),
    ):
        p = dsub.add_parser(name, help=text)
        data_arg(p)
        p.add_argument("serial")

    cmd = sub.add_parser("cmd", help="send a command to a device")
    data_arg(cmd)
    cmd.add_argument("serial")
    cmd.add_argument("--action", required=True)
    cmd.add_argument("--target")
    cmd.add_argument("--params", help="JSON object")
    cmd.add_argument(
        "--require-manifest",
        dest="setting_require_manifest",  # the settings flags' destination (nxg_mqtt.config)
        action="store_const",
        const="true",  # given as text like every settings flag; absent = env, file or default
        help="refuse if the device has no manifest",
    )

    history = sub.add_parser("history", help="stored messages of a device, newest first (as GET /api/history)")
    data_arg(history)
    history.add_argument("serial")
    history.add_argument("--type", help=f"one of {', '.join(t.value for t in MessageType)}")
    history.add_argument("--limit", help=f"1 to {HISTORY_MAX_LIMIT} (default {HISTORY_DEFAULT_LIMIT})")
    history.add_argument("--before", help="only messages older than this ts (ms; next_before of the last page)")

    key = sub.add_parser("key", help="manage API keys (the plain key is printed once)")
    ksub = key.add_subparsers(dest="key_command", required=True)
    kcreate = ksub.add_parser("create", help="a new API key")
    data_arg(kcreate)
    kcreate.add_argument("--name", required=True)
    kcreate.add_argument("--role", default="user", help="admin, user (default) or viewer")
    kcreate.add_argument("--scope", action="append", help="a scope (repeatable; default: all of the role's)")
    kcreate.add_argument("--device", action="append", help="a serial it may reach (repeatable; default: all)")
    kcreate.add_argument("--tenant", default=DEFAULT_TENANT_SLUG, help=TENANT_HELP)
    data_arg(ksub.add_parser("list", help="list keys (never their secrets)"))
    for name, text in (("revoke", "refuse the key from now on"), ("rotate", "a new secret; the old one stops")):
        p = ksub.add_parser(name, help=text)
        data_arg(p)
        p.add_argument("id")

    audit = sub.add_parser("audit", help="the audit log, newest first: key and device management, commands")
    data_arg(audit)
    audit.add_argument("--serial", help="only entries about this device (or key id)")
    audit.add_argument("--limit", type=int, default=100, help=f"1 to {HISTORY_MAX_LIMIT} (default 100)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "cert":
        from nxg_mqtt.tls import make_dev_certs

        files = make_dev_certs(Path(args.out), args.host or ["localhost", "127.0.0.1"])
        _emit(
            {
                **files,
                "serve": f"nxg-mqtt serve --tls-cert {files['cert']} --tls-key {files['key']} --tls-ca {files['ca']}",
            }
        )
        return 0
    try:
        settings, sources = _build_settings(args)
    except SettingError as exc:
        print(f"nxg-mqtt: {exc.message}", file=sys.stderr)  # one line, before anything starts
        return 2
    logs.configure(settings.log_level, settings.log_format)
    if args.command in ("device", "cmd", "history", "key", "audit"):
        logging.getLogger().setLevel(logging.WARNING)
    try:
        if args.command == "config":
            _emit(config.show(settings, sources))
            return 0
        if _taken_ports(settings, args.command):
            # found before anything starts (no half-started server, no log lines before the
            # message); the OSError handler below covers a port taken in between
            raise OSError(errno.EADDRINUSE, "address already in use")
        if args.command == "serve":
            if settings.broker == "external":
                broker_address(args.mqtt or "")  # checked before anything starts
            _run(lambda stop: _serve(settings, stop, args.mqtt))
        elif args.command == "broker":
            _run(lambda stop: _broker(settings, stop))
        elif args.command == "bridge":
            host, port = broker_address(args.mqtt)
            _run(lambda stop: _bridge(settings, host, port, stop))
        elif args.command == "device":
            asyncio.run(_admin(settings, lambda core: _device(args, core)))
        elif args.command == "cmd":
            asyncio.run(_admin(settings, lambda core: _cmd(args, core)))
        elif args.command == "history":
            asyncio.run(_admin(settings, lambda core: _history(args, core)))
        elif args.command == "key":
            asyncio.run(_admin(settings, lambda core: _key(args, core)))
        elif args.command == "audit":
            asyncio.run(_admin(settings, lambda core: _audit(args, core)))
    except NxgError as exc:
        failure: dict[str, Any] = {"error": exc.message, "code": exc.code}
        if isinstance(exc.details, list):
            failure["details"] = exc.details  # each JSON Schema error of PARAMS_INVALID
        if isinstance(exc, DryRunRequired):
            failure["dry_run_token"] = exc.token
        print(json.dumps(failure), file=sys.stderr)
        return EXIT_TRY_LATER if exc.status == 429 else 1
    except BrokenPipeError:
        # the reader went away (`nxg-mqtt history S | head`): stop quietly with the status a
        # tool killed by SIGPIPE has, and keep the interpreter's final flush from complaining
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(f"nxg-mqtt: {_port_in_use(settings, args.command, exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _taken_ports(settings: Settings, command: str) -> list[tuple[str, str, int]]:
    """(what, flag, port) of each fixed port `command` would listen on that is in use now."""
    ports: list[tuple[str, str, int | None]] = []
    if command == "broker" or (command == "serve" and settings.broker != "external"):
        ports += [("MQTT", "--mqtt-port", settings.mqtt_port), ("MQTT/WebSocket", "--ws-port", settings.ws_port)]
    if command in ("serve", "bridge"):
        ports.append(("HTTP", "--http-port", settings.http_port))
    return [(what, flag, port) for what, flag, port in ports if port and _taken(settings.host, port)]


def _port_in_use(settings: Settings, command: str, exc: OSError) -> str:
    """One line naming the taken port and the flag that changes it (instead of a traceback)."""
    taken = _taken_ports(settings, command)
    if not taken:
        return f"a port is already in use ({exc.strerror}); choose others with --mqtt-port, --ws-port, --http-port"
    what, flag, port = taken[0]
    return f"port {port} ({what}) is already in use on {settings.host}; choose another with {flag} (0 = any free)"


def _taken(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


if __name__ == "__main__":
    sys.exit(main())
