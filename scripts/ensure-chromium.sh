#!/usr/bin/env bash
# Make sure Debian's `chromium` and its WebDriver `chromedriver` (package `chromium-driver`) are installed:
# the enquiry page's browser test drives a real headless Chromium through them.  Installs both with apt-get
# when running as root and they are missing; otherwise says exactly what to do.
set -euo pipefail

have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }
have && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium or chromedriver is missing: installing Debian's chromium and chromium-driver with apt-get" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
  have || { echo "chromium installed but chromium or chromedriver is not on PATH" >&2; exit 1; }
else
  echo "chromium is not installed. Install it (Debian/Ubuntu: sudo apt-get install chromium chromium-driver)" >&2
  exit 1
fi
