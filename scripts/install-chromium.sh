#!/usr/bin/env bash
# Installs Debian's chromium, the headless browser that drives the
# dashboard's end-to-end test (pkg/dashboard/browser_test.go), unless a
# Chromium is already there: $BULK_CHROMIUM, or chromium, chromium-browser,
# google-chrome on $PATH. Prints the browser's path. Needs apt-get, as root
# or through sudo; safe to run again.
set -euo pipefail

if [ -n "${BULK_CHROMIUM:-}" ]; then
  if [ -x "$BULK_CHROMIUM" ]; then
    echo "$BULK_CHROMIUM"
    exit 0
  fi
  echo "install-chromium: BULK_CHROMIUM=$BULK_CHROMIUM is not an executable" >&2
  exit 1
fi
for name in chromium chromium-browser google-chrome google-chrome-stable; do
  if bin="$(command -v "$name")"; then
    echo "$bin"
    exit 0
  fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: no apt-get here; install Chromium and set BULK_CHROMIUM to it" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "installing chromium with apt-get" >&2
$sudo apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >&2
command -v chromium
