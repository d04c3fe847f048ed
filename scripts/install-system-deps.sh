#!/usr/bin/env bash
# Installs the Debian packages the tests and the gateway need, only those that are missing:
#   espeak-ng   text-to-speech backend (and the phonemiser of the Piper voice)
#   tesseract-ocr, tesseract-ocr-eng
#               OCR backend (ocr-l4) and its English language data
#   poppler-utils
#               pdftoppm, which renders PDF pages for OCR
#   chromium    headless browser for the dashboard and spending-report tests (driven by
#               playwright-core from tools/)
#   flac, vorbis-tools, lame
#               encoders the speech-to-text tests make FLAC, Ogg Vorbis and MP3 recordings with
# Runs apt-get update only when something must be installed; uses sudo when not root.
set -euo pipefail

packages=(espeak-ng tesseract-ocr tesseract-ocr-eng poppler-utils chromium flac vorbis-tools lame)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed$'; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "missing system packages: ${missing[*]}; apt-get not found: install them with your package manager" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then
    sudo=(sudo)
  else
    echo "missing system packages: ${missing[*]}; not root and sudo not found: install them as root" >&2
    exit 1
  fi
fi

echo "installing Debian packages: ${missing[*]} (espeak-ng: text-to-speech; tesseract-ocr, poppler-utils: OCR; chromium: browser tests; flac, vorbis-tools, lame: compressed audio for the speech-to-text tests)" >&2
"${sudo[@]}" apt-get update -qq >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}" >&2
