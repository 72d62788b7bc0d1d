"""What one blocking hook call costs the Mosquitto plugin: the round trip of `POST /mqtt/auth` and
`POST /mqtt/acl` on one kept-alive connection, as the plugin makes them (`mosquitto/nxg_plugin.c`
`hook_once`: one request, wait for the whole answer, the next).

    python -m bench.hook_bench                      # h11, httptools, raw; auth and acl, 3000 calls each
    python -m bench.hook_bench --http httptools --calls 5000

The serving process's side is the real one (`open_core`, `HookService`, `open_hook_listener`) in
this process; the caller is a separate process (a plain blocking socket, like the plugin), so the
two do not share a GIL. The auth call is a wrong token for a paired device (what a CONNECT storm's
bad logins cost before the plugin refused them itself); the acl call a device's publish.
Prints p50 / p90 / p99 / max in µs per parser and path, and checks that every answer was the
expected one on one connection (keep-alive held).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from nxg_mqtt.core import open_core
from nxg_mqtt.errors import ConnectRefused
from nxg_mqtt.hooks.http import HookListener, open_hook_listener
from nxg_mqtt.hooks.service import HookService
from nxg_mqtt.services.access import AclAction, Credentials
from nxg_mqtt.settings import Settings

# the caller, run as `python -c`: argv = port secret path body calls; prints one JSON line
CALLER = r"""
import json, socket, sys, time
port, secret, path, body, calls = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4].encode(), int(sys.argv[5])
request = (f"POST {path} HTTP/1.1\r\nHost: nxg-hooks\r\nAuthorization: Bearer {secret}\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
sock = socket.create_connection(("127.0.0.1", port))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
times, answers, reconnects = [], set(), 0
for i in range(calls):
    started = time.perf_counter_ns()
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("the listener closed the kept-alive connection")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
    while len(rest) < length:
        rest += sock.recv(4096)
    times.append((time.perf_counter_ns() - started) / 1000)
    if b"connection: close" in head.lower():
        raise SystemExit("the listener asked to close")
    answers.add(json.loads(rest[:length])["result"])
times = times[len(times) // 10:]  # the first tenth warms up
times.sort()
pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]
print(json.dumps({"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": times[-1], "answers": sorted(answers)}))
"""

BODIES = {
    "auth": (
        "/mqtt/auth",
        {"username": "B1", "password": "wrong-token-" + "x" * 20, "clientid": "B1", "peerhost": "127.0.0.2"},
    ),
    "acl": (
        "/mqtt/acl",
        {"username": "B1", "clientid": "B1", "topic": "nxg/B1/telemetry", "action": "publish", "qos": 1},
    ),
}
EXPECTED = {"auth": ["deny"], "acl": ["allow"]}


@contextlib.asynccontextmanager
async def raw_listener(hooks: HookService, settings: Settings) -> AsyncIterator[HookListener]:
    """A floor, not the product: the smallest kept-alive HTTP/1.1 handler for these two paths,
    calling the same decisions (`HookService.authenticate`/`allowed`) without Starlette or uvicorn.
    What a purpose-built handler could at best save over `open_hook_listener`."""
    expected = f"Bearer {settings.internal_secret}".encode()

    async def answer(path: bytes, body: dict[str, Any]) -> dict[str, Any]:
        if path == b"/mqtt/auth":
            creds = Credentials(
                body.get("username"), body.get("password"), body["clientid"], body.get("peerhost") or ""
            )
            try:
                await hooks.authenticate(creds, None)
            except ConnectRefused as exc:
                return {"result": "deny", "reason_code": exc.return_code}
            return {"result": "allow"}
        allowed = await hooks.allowed(body.get("username"), body["clientid"], body["topic"], AclAction(body["action"]))
        return {"result": "allow" if allowed else "deny"}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
                if headers.get(b"authorization") != expected:
                    data, status = b'{"code":"UNAUTHORIZED"}', b"401 Unauthorized"
                else:
                    data, status = json.dumps(await answer(lines[0].split()[1], json.loads(body))).encode(), b"200 OK"
                writer.write(
                    b"HTTP/1.1 "
                    + status
                    + b"\r\ncontent-type: application/json\r\ncontent-length: "
                    + str(len(data)).encode()
                    + b"\r\n\r\n"
                    + data
                )

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield HookListener("127.0.0.1", server.sockets[0].getsockname()[1])
    finally:
        server.close()


async def measure(http: str, calls: int) -> dict[str, dict[str, object]]:
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(data_dir=Path(data), host="127.0.0.1", hook_port=0, log_level="warning")
        async with open_core(settings, serve=True) as core:
            await core.devices.create("B1")
            await core.devices.pair((await core.devices.get("B1")).code, "127.0.0.1")
            hooks = HookService(core)
            out: dict[str, dict[str, object]] = {}
            opened = raw_listener(hooks, settings) if http == "raw" else open_hook_listener(hooks, settings, http=http)
            async with opened as listener:
                for name, (path, body) in BODIES.items():
                    caller = await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-c",
                        CALLER,
                        str(listener.port),
                        settings.internal_secret,
                        path,
                        json.dumps(body),
                        str(calls),
                        stdout=subprocess.PIPE,
                    )
                    stdout, _ = await caller.communicate()
                    if caller.returncode != 0:
                        raise SystemExit(f"the caller failed ({http}, {name})")
                    result = json.loads(stdout)
                    if result["answers"] != EXPECTED[name]:
                        raise SystemExit(f"unexpected answers {result['answers']} ({http}, {name})")
                    out[name] = result
            return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--http", choices=("h11", "httptools", "raw", "all"), default="all")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per parser")
    args = parser.parse_args()
    parsers = ("h11", "httptools", "raw") if args.http == "all" else (args.http,)
    for round_ in range(args.rounds):
        for http in parsers:
            for name, r in asyncio.run(measure(http, args.calls)).items():
                print(
                    f"round {round_ + 1} {http:9} {name:4}  p50 {r['p50']:7.0f} µs  p90 {r['p90']:7.0f}  "
                    f"p99 {r['p99']:7.0f}  max {r['max']:7.0f}"
                )


if __name__ == "__main__":
    main()
