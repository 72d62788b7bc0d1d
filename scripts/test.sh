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
# Two pytest-xdist workers: most of the suite waits on real sockets and child processes, so two
# workers on two cores halve the wall time; work-stealing evens out the long firmware and CLI tests.
# NXG_TEST_WORKERS=0 runs it in one process.
.venv/bin/pytest -n "${NXG_TEST_WORKERS:-2}" --dist worksteal "$@"
