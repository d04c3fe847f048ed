#!/usr/bin/env bash
# Runs every test: installs the npm tools first (anvil, solc, official SDKs), then the Rust
# workspace tests (unit, integration on a real anvil chain, doc tests) and the contract tests.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/x402/target}"
scripts/install-tools.sh
(cd tools && npm run --silent test:contracts)
cargo test --workspace --locked
