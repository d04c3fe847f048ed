#!/usr/bin/env bash
# Runs every test: installs what the tests use first (the npm tools: anvil, LiteSVM, solc,
# official SDKs; espeak-ng; every model, the optional Qwen2.5-Coder-0.5B-Instruct and Whisper
# base included, which their tests need), then the contract tests, the local Solana chain's
# tests and the Rust workspace tests (unit, integration on a real anvil chain with real models,
# doc tests).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/x402/target}"
scripts/install-deps.sh --all
(cd tools && npm run --silent test:contracts)
(cd tools && npm run --silent test:solana)
cargo test --workspace --locked
