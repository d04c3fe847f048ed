#!/usr/bin/env bash
# Coverage-guided fuzzing of untrusted payment headers with libFuzzer, on the nightly
# toolchain (the same instrumentation cargo-fuzz uses, without needing cargo-fuzz).
#   scripts/fuzz.sh [SECONDS]      default 60
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"
seconds="${1:-60}"
target=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/x402/target}/fuzz"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
cargo +nightly build --release --target "$target" --bin payment_headers
work="$(mktemp -d)"
cp corpus/payment_headers/* "$work/"
exec "$CARGO_TARGET_DIR/$target/release/payment_headers" "$work" \
  -max_total_time="$seconds" -max_len=4096 -artifact_prefix="$root/fuzz/artifacts-"
