#!/usr/bin/env bash
# The side-by-side browser benchmark: gllm-web vs transformers.js (WebGPU) on
# all-MiniLM-L6-v2, batch 1 and 32, in one headless Chromium page (www/bench/embed.html).
# Not part of CI. Installs @huggingface/transformers into benches/web/node_modules, writes the
# ONNX export of models/all-MiniLM-L6-v2 to target/bench-models/ (scripts/export_onnx.py,
# checked against the goldens; never committed), packs the npm package, serves the
# repository and prints the page's JSON table.
#   bash scripts/bench-vs-transformers.sh [runs] [webgpu|cpu]
# Mode cpu (also GLLM_BENCH_MODE=cpu): gllm-web `device: "cpu"` vs transformers.js
# `device: "wasm"` (fp32 and q8: onnx/model_quantized.onnx, written by export_onnx.py),
# single-threaded, in a Chromium launched without the WebGPU flags (page ?mode=cpu).
# GLLM_BENCH_NO_PACK=1 skips scripts/pack.sh (target/npm/package already current).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
MODE=${2:-${GLLM_BENCH_MODE:-webgpu}}
case "$MODE" in webgpu|cpu) ;; *) echo "mode must be webgpu or cpu, not $MODE" >&2; exit 2 ;; esac
PORT=${GLLM_BENCH_PORT:-8792}
[ -d benches/web/node_modules/@huggingface/transformers ] \
  || (cd benches/web && npm install --no-audit --no-fund --silent --ignore-scripts)
onnx=target/bench-models/all-MiniLM-L6-v2/onnx/model.onnx
if [ ! -f "$onnx" ]; then
  [ -x target/onnxenv/bin/python ] || python3 -m venv target/onnxenv
  target/onnxenv/bin/python -c "import onnx, onnxruntime, safetensors, tokenizers" 2>/dev/null \
    || target/onnxenv/bin/pip install -q onnx onnxruntime safetensors numpy tokenizers
  target/onnxenv/bin/python scripts/export_onnx.py models/all-MiniLM-L6-v2 target/bench-models/all-MiniLM-L6-v2 \
    tests/goldens/all-minilm-l6-v2.json 2>&1 | grep -v MergeShapeInfo
fi
# The q8 file (the CPU mode's second transformers.js contestant), for exports made before it.
if [ "$MODE" = cpu ] && [ ! -f "${onnx%/*}/model_quantized.onnx" ]; then
  target/onnxenv/bin/python scripts/export_onnx.py --q8 models/all-MiniLM-L6-v2 target/bench-models/all-MiniLM-L6-v2 \
    tests/goldens/all-minilm-l6-v2.json 2>&1 | grep -v -e MergeShapeInfo -e pre-processing
fi
[ "${GLLM_BENCH_NO_PACK:-0}" = 1 ] || bash scripts/pack.sh >/dev/null
source scripts/serve.sh
serve . "$PORT"
if [ "$MODE" = cpu ]; then
  BENCH_WEBGPU=0 node scripts/bench-browser.mjs "http://127.0.0.1:$PORT/www/bench/embed.html?runs=$RUNS&mode=cpu"
else
  node scripts/bench-browser.mjs "http://127.0.0.1:$PORT/www/bench/embed.html?runs=$RUNS"
fi
