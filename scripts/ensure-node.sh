#!/usr/bin/env bash
# Make sure the Node.js parts of the test suite are installed: the example partner client
# (examples/node-partner: amqplib, ajv, ajv-formats) and the official AsyncAPI parser (tests/asyncapi:
# @asyncapi/parser).  Runs `npm ci` (exact versions from each package-lock.json) in a folder whose
# node_modules is missing or older than its lock file.  Needs Node.js 20+ and npm; says what to do otherwise.
set -euo pipefail

cd "$(dirname "$0")/.."
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node and npm are missing: install Node.js 20 or later (Debian/Ubuntu: sudo apt-get install nodejs npm)" >&2
  exit 1
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
  echo "Node.js $(node --version) is too old: the partner client and the AsyncAPI parser need Node.js 20+" >&2
  exit 1
fi
for folder in examples/node-partner tests/asyncapi; do
  stamp="$folder/node_modules/.package-lock.json"
  if [ ! -f "$stamp" ] || [ "$folder/package-lock.json" -nt "$stamp" ]; then
    echo "installing the Node.js packages of $folder (npm ci)" >&2
    (cd "$folder" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
done
