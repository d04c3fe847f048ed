#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the local stack (a chain that
# looks like Base, with USDC at its real address) until Ctrl-C. State: .x402/dev/dev.json.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/x402/target}"
scripts/install-tools.sh
cargo build --locked --release -p x402-cli
exec "$CARGO_TARGET_DIR/release/x402" dev --state-dir "${X402_STATE_DIR:-.x402/dev}" "$@"
