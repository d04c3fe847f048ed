#!/usr/bin/env bash
# Installs what is missing of everything the tests and the local stack use besides crates: the
# npm tools (anvil, solc, the official SDKs, Permit2's creation code), the Debian packages
# (espeak-ng, tesseract, poppler-utils, chromium) and the models (MiniLM, SmolLM2, ONNX Runtime,
# open_nsfw, the Piper voice; the optional Qwen2.5-Coder and Whisper base when asked: its
# arguments go to scripts/install-models.sh). Each step skips what is already there.
set -euo pipefail
here="$(dirname "$0")"
"$here/install-tools.sh"
"$here/install-system-deps.sh"
"$here/install-models.sh" "$@"
