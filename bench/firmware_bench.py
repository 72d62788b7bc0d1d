"""Firmware OTA transfers: the server streams uploads and downloads, so its RSS stays flat.

    .venv/bin/python -m bench.firmware_bench [--mib 64] [--clients 4]

Starts `nxg-mqtt serve` on port 0 with a fresh data dir, uploads one `--mib` MiB binary (raw body),
then `--clients` clients download it at once, twice each (one whole, one resumed at the middle
with `Range`). Reports the upload and the downloads in MiB/s and the server's RSS before the upload
(the same-run baseline) and at its peak during the transfers, sampled every 50 ms. A server that
held the file in memory would grow by at least the file's size.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import psutil

PASSWORD = "bench-pw"


def peak_rss(pid: int, stop: threading.Event, out: list[int]) -> None:
    process = psutil.Process(pid)
    while not stop.is_set():
        out.append(process.memory_info().rss)
        time.sleep(0.05)


async def download(http: httpx.AsyncClient, url: str, start: int, size: int) -> None:
    """From `start` to the end; the bytes are counted, not kept."""
    headers = {"Range": f"bytes={start}-"} if start else {}
    async with http.stream("GET", url, headers=headers) as response:
        assert response.status_code == (206 if start else 200), response.status_code
        async for chunk in response.aiter_bytes(1 << 20):
            start += len(chunk)
    assert start == size


def start_server(data: str, mib: int) -> tuple[subprocess.Popen[str], int]:
    """`nxg-mqtt serve` on port 0; the process and its HTTP port (read from its banner)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nxg_mqtt.cli", "serve", "--host", "127.0.0.1", "--mqtt-port", "0",
         "--ws-port", "off", "--http-port", "0", "--admin-password", PASSWORD, "--data", data,
         "--firmware-max-bytes", str(mib << 20)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        assert line, "serve exited"
        if match := re.search(r"^\s+HTTP\s+\w+://[^\s:]+:(\d+)", line):
            return proc, int(match.group(1))


async def run(mib: int, clients: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(tmp, mib)
        await asyncio.sleep(1.0)
        baseline = psutil.Process(proc.pid).memory_info().rss
        samples: list[int] = []
        stop = threading.Event()
        sampler = threading.Thread(target=peak_rss, args=(proc.pid, stop, samples))
        sampler.start()
        binary = os.urandom(mib << 20)
        headers = {"Authorization": f"Bearer {PASSWORD}"}
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as http:
                began = time.perf_counter()
                created = await http.post(
                    f"/api/v1/firmware/release?device_type=bench&version={mib}.0.0", content=binary
                )
                upload_s = time.perf_counter() - began
                assert created.status_code == 201, created.text
                assert created.json()["checksum"] == hashlib.sha256(binary).hexdigest()
                url = f"/api/v1/firmware/{created.json()['id']}/download"
                size = len(binary)
                began = time.perf_counter()
                jobs = [download(http, url, start, size) for _ in range(clients) for start in (0, size // 2)]
                await asyncio.gather(*jobs)
                download_s = time.perf_counter() - began
        finally:
            stop.set()
            sampler.join()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
        moved = size * clients * 1.5 / (1 << 20)
        print(f"file {mib} MiB; upload {mib / upload_s:.0f} MiB/s; {clients} clients x (whole + resumed half):")
        print(f"  downloads {moved:.0f} MiB in {download_s:.2f} s = {moved / download_s:.0f} MiB/s")
        print(f"  server RSS: before {baseline / 2**20:.1f} MiB, peak {max(samples) / 2**20:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(run(args.mib, args.clients))


if __name__ == "__main__":
    main()
