#!/usr/bin/env bash
# Set up sweeper in .venv (first run only) and run the test suite (PostgreSQL tests mandatory
# when SWEEPER_REQUIRE_POSTGRES=1, as .ci/run sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
