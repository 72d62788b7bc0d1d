#!/usr/bin/env bash
# Sets everything up, then runs the broker and the bridge on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/nxg-mqtt serve "$@"
