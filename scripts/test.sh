#!/usr/bin/env bash
# Sets everything up, then runs the whole check: the firmware core's C unit tests (cmocka),
# ruff (lint + format), mypy --strict, pytest (which also builds and runs the host client).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-tests
make -s -C firmware test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy nxg_mqtt bridge tests bench
.venv/bin/pytest "$@"
