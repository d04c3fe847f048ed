#!/usr/bin/env bash
# The main job: installs what is missing (npm tools, espeak-ng, the MiniLM model), builds,
# and runs the local stack until Ctrl-C: a chain that looks like Base (USDC at its real
# address), our facilitator, and the pay-per-call inference gateway. State: .x402/dev/dev.json.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/x402/target}"
scripts/install-tools.sh
scripts/install-system-deps.sh
scripts/install-models.sh
cargo build --locked --release -p x402-cli
exec "$CARGO_TARGET_DIR/release/x402" dev --state-dir "${X402_STATE_DIR:-.x402/dev}" --models-dir "${MODELS_DIR:-$root/models}" "$@"
