#!/usr/bin/env bash
# Sets up the project on a fresh machine, idempotently: a virtualenv in .venv and the package.
#   scripts/setup.sh               what serving needs, nothing else (no system packages)
#   scripts/setup.sh --with-tests  + the test/lint tools and the system packages the tests build against
#                                  (libmosquitto, a C toolchain, libwebsockets, cJSON and cmocka: the firmware;
#                                  Chromium for the portal's browser tests, never a downloaded browser;
#                                  Mosquitto and its plugin headers, mosquitto-dev: the tests run the system on
#                                  Mosquitto too, README "Scaling out"; libssl-dev: the plugin's SHA-256)
#   scripts/setup.sh --bench       the same (Mosquitto is also the benchmark baseline and profile (d))
# When the plugin headers are there it builds mosquitto/nxg_plugin.so (make -C mosquitto).
# It never stops or disables a service on this machine: the tests and benchmarks use port 0.
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
for arg in "$@"; do
    case "$arg" in
        --with-tests) with_tests=1 ;;
        --bench) with_tests=1 ;;
        *) echo "usage: scripts/setup.sh [--with-tests] [--bench]" >&2; exit 2 ;;
    esac
done

need_apt=()
if [ "$with_tests" = 1 ]; then
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
    for pkg in libmosquitto-dev mosquitto-dev libssl-dev build-essential pkg-config libcjson-dev libwebsockets-dev libcmocka-dev chromium; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
    done
fi
if [ ${#need_apt[@]} -gt 0 ] && [ "${NXG_SKIP_APT:-0}" != "1" ]; then
    if [ "$(id -u)" = "0" ]; then
        apt-get update -qq || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null \
            || echo "warning: could not install ${need_apt[*]} (the benchmark baseline, the firmware build and the browser tests need them)" >&2
    else
        echo "warning: not root, skipping system packages: ${need_apt[*]}" >&2
    fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "$with_tests" = 1 ]; then
    .venv/bin/python -m pip install -q -e ".[dev]"
else
    .venv/bin/python -m pip install -q -e .
fi

# the Mosquitto plugin (`nxg-mqtt serve --broker mosquitto`): built when the headers are there
if [ -f /usr/include/mosquitto_broker.h ] && command -v make >/dev/null 2>&1; then
    make -s -C mosquitto >/dev/null || echo "warning: could not build mosquitto/nxg_plugin.so" >&2
fi
