#!/usr/bin/env bash
# Reads Uniswap's Permit2 creation code (MIT) out of the npm package @uniswap/uniswapx-sdk@3.1.0
# (its typechain factory carries it) into the git-ignored tools/permit2/Permit2.initcode.hex, so
# the devnet can deploy Permit2 at its canonical address. Only the tarball is fetched (no
# dependencies); the tarball and the extracted code are checked against pinned sha256 sums.
# Nothing of it is committed. Idempotent: does nothing when the code is in place.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/tools/permit2/Permit2.initcode.hex"
tarball_sha256=d336b47157e1339e62ff7b3a6f4843c0079aa6b8588d55cf5083fd3ec0161f73
code_sha256=3bda859ab1aacf4e7616445ebc8bccb705672b707d5e8256989b6702872a8249

if [ -f "$out" ] && [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$code_sha256" ]; then
  exit 0
fi
downloads="${XDG_CACHE_HOME:-$HOME/.cache}/x402/downloads"
mkdir -p "$downloads" "$(dirname "$out")"
tarball="$downloads/uniswap-uniswapx-sdk-3.1.0.tgz"
if [ ! -f "$tarball" ] || [ "$(sha256sum "$tarball" | cut -d' ' -f1)" != "$tarball_sha256" ]; then
  echo "fetching Permit2's creation code: npm tarball @uniswap/uniswapx-sdk@3.1.0 (590 KB, MIT)…" >&2
  (cd "$downloads" && npm pack @uniswap/uniswapx-sdk@3.1.0 --silent >/dev/null)
fi
if [ "$(sha256sum "$tarball" | cut -d' ' -f1)" != "$tarball_sha256" ]; then
  echo "the @uniswap/uniswapx-sdk@3.1.0 tarball does not match its pinned sha256; refusing it" >&2
  exit 1
fi
tar -xzf "$tarball" -O package/dist/cjs/src/contracts/factories/Permit2__factory.js \
  | grep -o '_bytecode = "0x[0-9a-fA-F]*"' | head -1 | sed -E 's/^_bytecode = "(0x[0-9a-fA-F]*)"$/\1/' \
  | tr -d '\n' > "$out.tmp"
if [ "$(sha256sum "$out.tmp" | cut -d' ' -f1)" != "$code_sha256" ]; then
  rm -f "$out.tmp"
  echo "the Permit2 creation code read from the package does not match its pinned sha256" >&2
  exit 1
fi
mv "$out.tmp" "$out"
