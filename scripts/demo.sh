#!/usr/bin/env bash
# The main job: sets everything up on a fresh machine, builds the wasm package, serves the
# repository and runs the semantic-search demo (www/) in headless Chromium, printing the
# ranked results for a sample query.
#   bash scripts/demo.sh ["your query"]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
QUERY=${1:-Where is the cat resting?}
PORT=${GLLM_DEMO_PORT:-8778}

bash scripts/setup.sh
echo "demo: wasm-pack build --target web --release, npm package in target/npm/package"
bash scripts/pack.sh

source scripts/serve.sh
serve . "$PORT"
node scripts/demo.mjs "http://127.0.0.1:$PORT/www/?nocache=1&reranker=http://127.0.0.1:$PORT/models/reranker-synthetic-minilm" "$QUERY"
