#!/usr/bin/env bash
# Sets everything up, then runs the whole check: ruff (lint + format), mypy --strict, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-tests
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy nxg_mqtt bridge tests bench
.venv/bin/pytest "$@"
