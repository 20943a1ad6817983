#!/usr/bin/env bash
# Make sure `promtool` (from Debian's `prometheus` package) is on PATH: the tests check the live metrics
# exposition, the alert rules and the rule unit tests with it.  Installs the package with apt-get when
# running as root and it is missing; otherwise says exactly what to do.
set -euo pipefail

command -v promtool >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "promtool is missing: installing Debian's prometheus package with apt-get" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # the package starts a Prometheus server on :9090 where services run; the tests only need promtool
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
  command -v service >/dev/null 2>&1 && service prometheus stop >/dev/null 2>&1 || true
  command -v promtool >/dev/null 2>&1 || { echo "prometheus installed but promtool is not on PATH" >&2; exit 1; }
else
  echo "promtool is not installed. Install it (Debian/Ubuntu: sudo apt-get install prometheus)" >&2
  exit 1
fi
