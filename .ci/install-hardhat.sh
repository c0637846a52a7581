#!/usr/bin/env bash
# A local Ethereum JSON-RPC development node for the anchoring tests: hardhat 2.x from the
# npm registry, on Debian's Node.js (apt-get install nodejs npm). Pinned by package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/hardhat"
if ! command -v node >/dev/null; then
  sudo apt-get install -y nodejs npm || apt-get install -y nodejs npm
fi
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
