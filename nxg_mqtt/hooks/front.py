"""The hooks' front: a small process of its own that answers what a broker blocks on.

    async with open_hook_front(settings, listener.url) as front:
        print(front.url)        # what Mosquitto's plugin (or EMQX) calls; `hook_host:hook_port`

Why: Mosquitto waits for every hook answer on its one thread. Answered by the serving process
(uvicorn and Starlette on an event loop busy ingesting) each answer took 1-3 ms, so a storm of
500 CONNECTs (about 1,000 calls) kept Mosquitto, and all its telemetry, stopped for the whole
storm. A thread in the serving process was worse (it waits for the GIL behind the loop). This
process has nothing else to do and answers without a framework:

- `POST /mqtt/auth` of a device (user name = client id = serial, a password): decided here by
  `access.device_grant` on the device's row, read through a read-only SQLite connection of its
  own. Allowed: answered at once, and the same request is passed on to the serving process
  (`notify`), which decides it again and, as before, remembers the client and marks it online.
- `POST /mqtt/acl` of the bridge, a pairing session or a device: decided here by
  `access.topic_allowed` on the subject its user name names (`subjects.subject_by_name`, what the
  serving process uses for a client it does not remember). A device subscribing to its own
  commands is passed on as well: the serving process then sends what is queued for it.
- `POST /mqtt/connected` and `/mqtt/disconnected`: passed on; answered `{"result":"ok"}` at once
  (presence; the broker needs no verdict).
- Everything else is proxied and its answer relayed unchanged: every refusal (its CONNACK code and
  the lockouts are the serving process's, `access.authenticate`), pairing, bridge and key logins, a
  key's ACL (it asks the tenants), and any request that is not exactly as expected (so 400 and 401
  bodies stay the listener's own).

So one decision still has one implementation (`nxg_mqtt.services.access`); the front only picks
the cases that need no state of the serving process. What is passed on goes over one connection in
the order the broker reported it; proxied requests use another, and a proxied request about a
client id waits until what was passed on about that client id has been taken (a pairing login
with a device's serial as client id must meet the device already remembered: 0x02).

Run as `python -m nxg_mqtt.hooks.front FD UPSTREAM_URL DB_PATH TENANT`: FD a listening socket it
inherits, the internal secret on stdin (not in argv: `ps` shows argv).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nxg_mqtt.hooks.subjects import subject_by_name
from nxg_mqtt.protocol import Role
from nxg_mqtt.services.access import (
    BRIDGE_USER,
    KEY_USER,
    PAIR_USER,
    AclAction,
    Credentials,
    device_grant,
    topic_allowed,
)
from nxg_mqtt.settings import Settings
from nxg_mqtt.store.devices import TOKEN_HASH_SQL
from nxg_mqtt.topics import Channel, device_topic

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 3.0
MAX_REQUEST = 64 * 1024
_ACTIONS = {a.value: a for a in AclAction}
_OK = b'{"result":"ok"}'


@dataclass(frozen=True, slots=True)
class Request:
    path: bytes
    authorization: bytes
    body: bytes
    raw: bytes  # as received: what is passed on or proxied


def parse_request(buffer: bytearray) -> Request | None:
    """One complete HTTP/1.1 request taken off `buffer`, or None while incomplete.
    ValueError: not a request this front can read (the connection is closed)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_REQUEST:
            raise ValueError("request head too long")
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"POST":
        raise ValueError("only POST")
    length, authorization = 0, b""
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"authorization":
            authorization = value.strip()
        elif name == b"transfer-encoding":
            raise ValueError("chunked bodies are not read here")
    if length < 0 or length > MAX_REQUEST:
        raise ValueError("bad content-length")
    total = end + 4 + length
    if len(buffer) < total:
        return None
    raw = bytes(buffer[:total])
    del buffer[:total]
    return Request(parts[1], authorization, raw[end + 4 :], raw)


def response(body: bytes, status: bytes = b"200 OK") -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class Upstream:
    """One kept-alive HTTP/1.1 connection to the serving process's listener; one call at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def call(self, raw: bytes) -> bytes:
        """The whole response (head and body) to `raw`; OSError if the listener cannot be reached."""
        async with self._lock:
            for attempt in (0, 1):  # a kept-alive connection may have been closed meanwhile
                try:
                    if self._writer is None:
                        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
                    assert self._reader is not None
                    self._writer.write(raw)
                    head = await self._reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value.strip())
                    answer = head + await self._reader.readexactly(length)
                    if b"\r\nconnection: close" in head.lower():
                        self.close()
                    return answer
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                    self.close()
                    if attempt:
                        raise OSError(f"hook listener at {self.host}:{self.port}: {exc!r}") from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class Front:
    def __init__(self, secret: str, upstream: tuple[str, int], db_path: Path, tenant: str) -> None:
        self._expected = b"Bearer " + secret.encode()
        self._proxy = Upstream(*upstream)
        self._notify = Upstream(*upstream)
        self._notices: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()
        self._in_flight: dict[str, int] = {}  # client id -> reports passed on, not yet taken
        self._taken = asyncio.Condition()
        self._db_path = db_path
        self._tenant = tenant
        self._reader: sqlite3.Connection | None = None
        self.counters = {"answered": 0, "proxied": 0, "passed_on": 0}

    async def run_notices(self) -> None:
        """What is passed on, in order; a failure is logged and the next one goes on."""
        while True:
            raw, client_id = await self._notices.get()
            try:
                await self._notify.call(raw)
            except OSError as exc:
                log.warning("passing a hook report on failed: %s", exc)
            left = self._in_flight.pop(client_id, 1) - 1
            if left:
                self._in_flight[client_id] = left
            async with self._taken:
                self._taken.notify_all()

    async def answer(self, request: Request) -> bytes:
        mine = self._decide(request) if hmac.compare_digest(request.authorization, self._expected) else None
        if mine is not None:
            self.counters["answered"] += 1
            return response(mine)
        self.counters["proxied"] += 1
        client_id = _client_id(request.body)
        if client_id in self._in_flight:
            async with self._taken:
                await self._taken.wait_for(lambda: client_id not in self._in_flight)
        try:
            return await self._proxy.call(request.raw)
        except OSError as exc:
            log.warning("%s", exc)
            return response(
                b'{"error":"the hook listener is unreachable","code":"HOOK_UNAVAILABLE"}', b"503 Unavailable"
            )

    def _pass_on(self, request: Request, client_id: str) -> None:
        self.counters["passed_on"] += 1
        self._in_flight[client_id] = self._in_flight.get(client_id, 0) + 1
        self._notices.put_nowait((request.raw, client_id))

    def _decide(self, request: Request) -> bytes | None:
        """The answer's body where this front may give it, else None (proxied)."""
        try:
            body = json.loads(request.body)
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        if request.path == b"/mqtt/auth":
            return self._auth(request, body)
        if request.path == b"/mqtt/acl":
            return self._acl(request, body)
        if request.path in (b"/mqtt/connected", b"/mqtt/disconnected"):
            if not (isinstance(body.get("clientid"), str) and body["clientid"]):
                return None  # the listener's 400
            self._pass_on(request, body["clientid"])
            return _OK
        return None

    def _auth(self, request: Request, body: dict[str, Any]) -> bytes | None:
        username, password, client_id = body.get("username"), body.get("password"), body.get("clientid")
        if not (isinstance(username, str) and isinstance(password, str) and isinstance(client_id, str)):
            return None
        if username in (PAIR_USER, BRIDGE_USER, KEY_USER) or not password or client_id != username:
            return None
        peer = body.get("peerhost")
        grant = device_grant(
            Credentials(username, password, client_id, peer if isinstance(peer, str) else "unknown"),
            self._row(username),
        )
        if grant is None:
            return None  # refused: the serving process gives the code
        self._pass_on(request, client_id)
        return b'{"result":"allow","is_superuser":false}'

    def _acl(self, request: Request, body: dict[str, Any]) -> bytes | None:
        username, client_id, topic = body.get("username"), body.get("clientid"), body.get("topic")
        action = _ACTIONS.get(body.get("action"))  # type: ignore[arg-type]
        if not (isinstance(client_id, str) and client_id and isinstance(topic, str) and topic and action):
            return None
        if username is not None and not isinstance(username, str):
            return None
        subject = subject_by_name(username, client_id)
        if subject is None or subject.role is Role.KEY:
            return None
        allowed = _run_sync(topic_allowed(subject, topic, action, _no_tenants))
        if allowed is None:
            return None
        if (
            allowed
            and action is AclAction.SUBSCRIBE
            and subject.role is Role.DEVICE
            and topic == device_topic(subject.serial or "", Channel.CMD)
        ):
            self._pass_on(request, client_id)  # the serving process sends the device's queued commands
        return b'{"result":"allow"}' if allowed else b'{"result":"deny"}'

    def _row(self, serial: str) -> tuple[str, str | None, bool] | None:
        try:
            if self._reader is None:
                self._reader = sqlite3.connect(f"file:{self._db_path}?mode=ro", uri=True)
                self._reader.execute("PRAGMA busy_timeout=2000")
            row = self._reader.execute(TOKEN_HASH_SQL, (self._tenant, serial)).fetchone()
        except sqlite3.Error:
            log.exception("reading %s's login row failed; asking the serving process", serial)
            return None  # device_grant refuses, and the serving process decides
        return (row[0], row[1], bool(row[2])) if row else None


def _client_id(body: bytes) -> str:
    try:
        value = json.loads(body)
    except ValueError:
        return ""
    client_id = value.get("clientid") if isinstance(value, dict) else None
    return client_id if isinstance(client_id, str) else ""


async def _no_tenants(serial: str) -> str | None:
    raise LookupError("a key's ACL is decided by the serving process")


def _run_sync(coroutine: Any) -> bool | None:
    """`topic_allowed` for a role that never waits (all but `key`): its value; None if it would."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return bool(done.value)
    except LookupError:
        return None
    coroutine.close()
    return None


class _Connection(asyncio.Protocol):
    """One client of the front; its requests are answered in order, one at a time."""

    def __init__(self, front: Front) -> None:
        self._front = front
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._next()

    def _next(self) -> None:
        transport = self._transport
        while not self._busy and transport is not None and not transport.is_closing():
            try:
                request = parse_request(self._buffer)
            except ValueError:
                transport.write(response(b'{"error":"bad request","code":"HOOK_REQUEST_INVALID"}', b"400 Bad Request"))
                transport.close()
                return
            if request is None:
                return
            self._busy = True
            task = asyncio.ensure_future(self._front.answer(request))
            task.add_done_callback(self._answered)

    def _answered(self, task: asyncio.Future[bytes]) -> None:
        self._busy = False
        if self._transport is not None and not self._transport.is_closing():
            if task.cancelled() or task.exception() is not None:
                self._transport.close()
                return
            self._transport.write(task.result())
        self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


async def serve(sock: socket.socket, upstream_url: str, db_path: Path, tenant: str, secret: str) -> None:
    up_host, _, up_port = upstream_url.removeprefix("http://").rpartition(":")
    front = Front(secret, (up_host.strip("[]"), int(up_port)), db_path, tenant)
    server = await asyncio.get_running_loop().create_server(lambda: _Connection(front), sock=sock)
    notices = asyncio.create_task(front.run_notices())
    try:
        await server.serve_forever()
    finally:
        notices.cancel()


# ---- the serving process's side ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HookFront:
    host: str
    port: int
    process: asyncio.subprocess.Process

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@contextlib.asynccontextmanager
async def open_hook_front(settings: Settings, upstream_url: str) -> AsyncIterator[HookFront]:
    """The front as a child process on `hook_host:hook_port` (0: a free port), in front of the
    serving process's listener at `upstream_url`. The socket is bound and listening here and
    handed over, so nothing waits for the child to start: the broker's first questions queue in
    the socket's backlog meanwhile (a few hundred ms)."""
    family = socket.AF_INET6 if ":" in settings.hook_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.hook_host, settings.hook_port))
        sock.listen(1024)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "nxg_mqtt.hooks.front",
            str(sock.fileno()),
            upstream_url,
            str(settings.db_path.resolve()),
            settings.tenant_id,
            stdin=asyncio.subprocess.PIPE,
            pass_fds=(sock.fileno(),),
        )
    except BaseException:
        sock.close()
        raise
    assert process.stdin is not None
    try:
        process.stdin.write(settings.internal_secret.encode() + b"\n")
        await process.stdin.drain()
        process.stdin.close()
        yield HookFront(settings.hook_host, int(sock.getsockname()[1]), process)
    finally:
        sock.close()
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()


def main(argv: list[str]) -> None:
    fd, upstream_url, db_path, tenant = argv
    secret = sys.stdin.readline().rstrip("\n")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s nxg-hooks-front: %(message)s")
    sock = socket.socket(fileno=int(fd))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(sock, upstream_url, Path(db_path), tenant, secret))


if __name__ == "__main__":
    main(sys.argv[1:])
