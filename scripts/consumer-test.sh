#!/usr/bin/env bash
# The consumer test: what `npm install gllm-web` gives a user. Packs the npm package, makes
# a fresh Vite project in a temporary directory outside the crate, installs the tarball and
# Vite from npm, builds a page from the package README's own examples
# (tests/consumer/extract.mjs), serves it with the models and checks in headless Chromium
# what each example printed (tests/consumer/check.mjs).
#   bash scripts/consumer-test.sh          (GLLM_SKIP_WASM_BUILD=1 reuses pkg/)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
PORT=${GLLM_CONSUMER_PORT:-8790}
tarball=$(bash scripts/pack.sh | tail -1)
echo "consumer: packed $tarball ($(du -h "$tarball" | cut -f1))"
source scripts/serve.sh
tmp=$(mktemp -d /tmp/gllm-consumer.XXXXXX)
trap 'kill "${SERVERS[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
cd "$tmp"
echo '{ "name": "gllm-consumer", "private": true, "type": "module" }' > package.json
npm install --no-audit --no-fund --silent "$tarball" vite@8.3.8
node "$repo/tests/consumer/extract.mjs" node_modules/gllm-web/README.md .
npx vite build --logLevel warn
ls dist/assets | grep -q '\.wasm$' || { echo "consumer: vite did not emit the .wasm asset" >&2; exit 1; }
ln -s "$repo/models" dist/models
cd "$repo"
serve "$tmp/dist" "$PORT"
node tests/consumer/check.mjs "http://127.0.0.1:$PORT/"
