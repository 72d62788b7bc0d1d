#!/usr/bin/env bash
# Sets up everything the project needs on a fresh machine, idempotently:
# system packages (Mosquitto for the benchmark baseline and the Mosquitto profile; a C toolchain,
# libmosquitto, libwebsockets, cJSON and cmocka for the firmware's host client and unit tests;
# Chromium for the portal's browser tests: Playwright drives it, it never downloads a browser),
# a virtualenv in .venv, and the package itself.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
for pkg in libmosquitto-dev build-essential pkg-config libcjson-dev libwebsockets-dev libcmocka-dev chromium; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ] && [ "${NXG_SKIP_APT:-0}" != "1" ]; then
    if [ "$(id -u)" = "0" ]; then
        apt-get update -qq || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null \
            || echo "warning: could not install ${need_apt[*]} (the benchmark baseline, the firmware build and the browser tests need them)" >&2
    else
        echo "warning: not root, skipping system packages: ${need_apt[*]}" >&2
    fi
fi
# a system mosquitto service would hold port 1883; the project starts its own on port 0
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[dev]"
