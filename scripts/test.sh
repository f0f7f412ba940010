#!/usr/bin/env bash
# Set up sweeper in .venv (first run only), headless Chromium for the report tests (Debian's
# package, only when missing), and run the test suite. .ci/run makes the PostgreSQL and browser
# tests mandatory (SWEEPER_REQUIRE_POSTGRES=1, SWEEPER_REQUIRE_BROWSER=1); elsewhere they skip
# with a reason when the server or the browser cannot be had.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_browser.sh || echo "note: could not install chromium; browser tests will skip" >&2
# Two test processes (pytest-xdist), each test file in one of them: most tests wait on a
# subprocess's TensorFlow start-up, so two share the cores well. SWEEPER_TEST_WORKERS=0: one process.
# The 15 slowest tests are listed at the end: where the run's time goes.
exec .venv/bin/python -m pytest -q -n "${SWEEPER_TEST_WORKERS:-2}" --dist loadfile --durations=15 "$@"
