#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (test/*.browser.test.ts), which drive it with
# playwright-core at /usr/bin/chromium (CHROMIUM_PATH to use another). Needs root (or sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
chromium --version
