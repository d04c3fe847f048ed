#!/usr/bin/env bash
# The main job: installs what is missing (npm tools, espeak-ng, the MiniLM, SmolLM2 and Whisper tiny.en models; the optional
# models by flag: --qwen-coder, --whisper-base, or --all-models for both, see scripts/install-models.sh --help), builds and
# installs the `x402` binary (cargo install, into ~/.cargo/bin), and runs the local stack until Ctrl-C: a chain that looks like Base (USDC at its real
# address), our facilitator, and the pay-per-call inference gateway. State: .x402/dev/dev.json.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/x402/target}"
# The optional models' flags go to the install script, every other argument to `x402 dev`.
model_flags=()
dev_args=()
for arg in "$@"; do
  case "$arg" in
    --qwen-coder | --whisper-base) model_flags+=("$arg") ;;
    --all-models) model_flags+=(--all) ;;
    *) dev_args+=("$arg") ;;
  esac
done
scripts/install-deps.sh "${model_flags[@]}"
# Installed where rustup puts cargo's binaries (on PATH), so the README's `x402 …` commands
# work as written in another terminal; the release build above is reused, not redone.
cargo install --locked --quiet --path crates/cli
bin="${CARGO_HOME:-$HOME/.cargo}/bin/x402"
echo "installed $bin ($(command -v x402 >/dev/null && echo 'on PATH' || echo "add $(dirname "$bin") to PATH"))"
exec "$bin" dev --state-dir "${X402_STATE_DIR:-.x402/dev}" --models-dir "${MODELS_DIR:-$root/models}" "${dev_args[@]}"
