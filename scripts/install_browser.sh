#!/usr/bin/env bash
# Headless Chromium for the report/serve browser tests (Debian's `chromium` package).
# Installs only when /usr/bin/chromium is missing; needs root (or sudo) and the apt mirrors.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null
