#!/usr/bin/env bash
# Installs the npm tools the project runs (anvil, LiteSVM for the local Solana chain, solc, the
# official x402 SDKs used as test peers) into tools/node_modules, from the pinned versions in
# tools/package-lock.json. Skips the install when node_modules already matches the lockfile.
# Then reads Permit2's creation code for the devnet (scripts/install-permit2.sh).
set -euo pipefail
scripts="$(cd "$(dirname "$0")" && pwd)"
cd "$scripts/../tools"

if ! command -v npm >/dev/null; then
  echo "npm not found: install Node.js 20+ (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
stamp=node_modules/.x402-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exec "$scripts/install-permit2.sh"
fi
echo "installing tools/ from npm: @foundry-rs/anvil (local chain), litesvm 1.5.0 (local Solana chain), solc (contract compiler), @x402/* 2.27.0 (interop peers)…" >&2
# `npm ci` cannot be used: the lockfile omits anvil's binaries for other platforms, which the
# registry reachable here does not serve. `npm install` honours the lockfile's pinned versions.
npm install --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
"$scripts/install-permit2.sh"
