#!/usr/bin/env bash
# The main job: installs what is missing (npm tools, espeak-ng, the MiniLM, SmolLM2 and Whisper tiny.en models), builds and
# installs the `x402` binary (cargo install, into ~/.cargo/bin), and runs the local stack until Ctrl-C: a chain that looks like Base (USDC at its real
# address), our facilitator, and the pay-per-call inference gateway. State: .x402/dev/dev.json.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/x402/target}"
scripts/install-deps.sh
# Installed where rustup puts cargo's binaries (on PATH), so the README's `x402 …` commands
# work as written in another terminal; the release build above is reused, not redone.
cargo install --locked --quiet --path crates/cli
bin="${CARGO_HOME:-$HOME/.cargo}/bin/x402"
echo "installed $bin ($(command -v x402 >/dev/null && echo 'on PATH' || echo "add $(dirname "$bin") to PATH"))"
exec "$bin" dev --state-dir "${X402_STATE_DIR:-.x402/dev}" --models-dir "${MODELS_DIR:-$root/models}" "$@"
