#!/usr/bin/env bash
# Installs what is missing of everything the tests and the local stack use besides crates: the
# npm tools (anvil, solc, the official SDKs, Permit2's creation code), espeak-ng and the MiniLM
# model. Each step skips what is already there.
set -euo pipefail
here="$(dirname "$0")"
"$here/install-tools.sh"
"$here/install-system-deps.sh"
"$here/install-models.sh"
