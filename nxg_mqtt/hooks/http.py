"""The internal hook listener: EMQX 5's HTTP authentication/authorization shapes, plus presence.

    async with open_hook_listener(hooks, settings) as listener:
        print(listener.port)   # settings.hook_port may be 0

- `POST /mqtt/auth` `{"username","password","clientid","peerhost","conn"?}` →
  `{"result":"allow","is_superuser":bool}` or `{"result":"deny","reason_code":4,"reason":"..."}`;
  a lockout's 0x03 adds `"retry_after_s"`: until then every login of that user name from that
  `peerhost` is refused whatever its password (a device's token is never locked out); a device
  login's 0x05 adds `"password_refused_s"`: until then, or until that user's login changes (a
  credential delta or a kick), the same user name, client id and password get the same answer
  (`HookService.password_refused_s` says why that never refuses a valid token)
- `POST /mqtt/acl` `{"username","clientid","topic","action","qos"?}` → `{"result":"allow"|"deny"}`;
  `action` is `publish`, `subscribe` or `receive` (a delivery: Mosquitto's read check)
- `POST /mqtt/connected` `{"username","clientid","peerhost"?,"conn"?}` → `{"result":"ok"}`
- `POST /mqtt/disconnected` `{"username"?,"clientid","conn"?,"reason"?}` → `{"result":"ok"}`

With `conn` (the Mosquitto plugin's name for the connection) an allowed CONNECT also counts as
`/mqtt/connected`: one blocking call per CONNECT. `reason_code` is the MQTT 3.1.1 CONNACK code
of PROTOCOL §2 (EMQX ignores it; the Mosquitto plugin sends it to the client). Every request
carries `Authorization: Bearer <internal secret>` (the secret the `bridge` user logs in with);
without it: 401. A body that is not such an object:
400 `{"error","code":"HOOK_REQUEST_INVALID"}`. The listener binds `hook_host` (loopback by
default): the hooks answer questions about credentials, so they are never a public endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from nxg_mqtt.errors import ConnectRefused
from nxg_mqtt.hooks.service import HookService
from nxg_mqtt.services.access import AclAction, Credentials
from nxg_mqtt.settings import Settings

INVALID = "HOOK_REQUEST_INVALID"
# uvicorn's C parser (httptools, as the bridge uses since 5e4e2a0): the hooks were written with
# h11 before that change and never followed it; every hook call blocks Mosquitto's one thread,
# and h11's pure-Python parsing was ~250 µs of a ~700 µs round trip (`python -m bench.hook_bench`:
# p50 auth 680-710 -> 450-460 µs, acl 680-700 -> 290-390 µs); keep-alive with the plugin is the same
HTTP_PARSER = "httptools"
Handler = Callable[[Request], Awaitable[JSONResponse]]
_ACTIONS = {a.value: a for a in AclAction}


class _BadRequest(Exception):
    pass


def _text(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise _BadRequest(f"{name!r} must be a non-empty string")
    return value


def create_hook_app(hooks: HookService, secret: str) -> Starlette:
    expected = f"Bearer {secret}".encode()

    async def body_of(request: Request) -> dict[str, Any] | JSONResponse:
        given = request.headers.get("authorization", "").encode(errors="surrogateescape")
        if not hmac.compare_digest(given, expected):
            return JSONResponse({"error": "the internal secret is required", "code": "UNAUTHORIZED"}, 401)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": "the body must be JSON", "code": INVALID}, 400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the body must be a JSON object", "code": INVALID}, 400)
        return body

    def bad(exc: _BadRequest) -> JSONResponse:
        return JSONResponse({"error": str(exc), "code": INVALID}, 400)

    def answering(handler: Handler) -> Handler:
        """The broker waits for every hook answer: queued presence work waits for it instead."""

        @functools.wraps(handler)
        async def answer(request: Request) -> JSONResponse:
            with hooks.answering():
                return await handler(request)

        return answer

    @answering
    async def auth(request: Request) -> JSONResponse:
        body = await body_of(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            creds = Credentials(
                _text(body, "username", required=False),
                _text(body, "password", required=False),
                _text(body, "clientid") or "",
                _text(body, "peerhost", required=False) or "unknown",
            )
            conn = _text(body, "conn", required=False)
        except _BadRequest as exc:
            return bad(exc)
        try:
            grant = await hooks.authenticate(creds, conn)
        except ConnectRefused as exc:
            denied: dict[str, Any] = {"result": "deny", "reason_code": exc.return_code, "reason": exc.message}
            if exc.retry_after is not None:
                # a lockout: every login of this user name from this address gets the same answer
                # until then (the Mosquitto plugin keeps it and asks nothing meanwhile)
                denied["retry_after_s"] = round(exc.retry_after, 3)
            refused_s = hooks.password_refused_s(creds, exc)
            if refused_s is not None:
                # this exact login gets the same answer until that user's login changes (a
                # credential delta or a kick) or this time is up (the plugin keeps it)
                denied["password_refused_s"] = refused_s
            return JSONResponse(denied)
        answer: dict[str, Any] = {"result": "allow", "is_superuser": grant.superuser}
        rules = await hooks.topics_of(grant, creds.client_id)
        if rules:
            answer["acl"] = rules  # EMQX 5's authn ACL; the Mosquitto plugin fills its cache
        return JSONResponse(answer)

    @answering
    async def acl(request: Request) -> JSONResponse:
        body = await body_of(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            client_id = _text(body, "clientid") or ""
            topic = _text(body, "topic") or ""
            username = _text(body, "username", required=False)
            action = _ACTIONS.get(body.get("action"))  # type: ignore[arg-type]
            if action is None:
                raise _BadRequest("'action' must be one of " + ", ".join(_ACTIONS))
        except _BadRequest as exc:
            return bad(exc)
        return JSONResponse({"result": "allow" if await hooks.allowed(username, client_id, topic, action) else "deny"})

    @answering
    async def connected(request: Request) -> JSONResponse:
        body = await body_of(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            client_id = _text(body, "clientid") or ""
            await hooks.connected(
                _text(body, "username", required=False),
                client_id,
                _text(body, "peerhost", required=False),
                _text(body, "conn", required=False),
            )
        except _BadRequest as exc:
            return bad(exc)
        return JSONResponse({"result": "ok"})

    @answering
    async def disconnected(request: Request) -> JSONResponse:
        body = await body_of(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            await hooks.disconnected(
                _text(body, "clientid") or "",
                _text(body, "conn", required=False),
                _text(body, "reason", required=False),
            )
        except _BadRequest as exc:
            return bad(exc)
        return JSONResponse({"result": "ok"})

    return Starlette(
        routes=[
            Route("/mqtt/auth", auth, methods=["POST"]),
            Route("/mqtt/acl", acl, methods=["POST"]),
            Route("/mqtt/connected", connected, methods=["POST"]),
            Route("/mqtt/disconnected", disconnected, methods=["POST"]),
        ]
    )


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Any:  # signals belong to the CLI
        yield


@dataclass(frozen=True, slots=True)
class HookListener:
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@contextlib.asynccontextmanager
async def open_hook_listener(
    hooks: HookService, settings: Settings, *, http: str = HTTP_PARSER
) -> AsyncIterator[HookListener]:
    """`http`: uvicorn's HTTP/1.1 implementation (`bench.hook_bench` compares them)."""
    family = socket.AF_INET6 if ":" in settings.hook_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small answers, kept-alive: no 40 ms waits
    try:
        sock.bind((settings.hook_host, settings.hook_port))
    except OSError:
        sock.close()
        raise
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        create_hook_app(hooks, settings.internal_secret),
        lifespan="off",
        http=http,
        log_level=settings.log_level,
        log_config=None,
        access_log=False,  # one line per ACL check would drown the log
        timeout_keep_alive=3600,  # the Mosquitto plugin keeps one connection open
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="nxg-hooks-http")
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the hook listener stopped during start-up")
            await asyncio.sleep(0.01)
        yield HookListener(settings.hook_host, port)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
        await hooks.close()
