#!/usr/bin/env bash
# Set up sweeper in .venv (first run only) and run the quickstart sweep; ends with a report path.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/sweeper run sweeps/quickstart.yaml "$@"
