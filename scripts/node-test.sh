#!/usr/bin/env bash
# The Node runtime test: packs the npm package, installs the tarball and `webgpu` (Dawn,
# Chrome's WebGPU engine, as a Node addon) in a temporary project, and runs
# tests/node/run.mjs there through `gllm-web/node`: embed parity with the MiniLM goldens,
# SmolLM2's first greedy tokens, search, the file-system cache and the package README's Node
# examples. Without a GPU, Dawn runs on Chromium's SwiftShader Vulkan driver (scripts/setup.sh
# installs chromium; Dawn rejects Mesa's lavapipe).
#   bash scripts/node-test.sh          (GLLM_SKIP_WASM_BUILD=1 reuses pkg/)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
tarball=$(bash scripts/pack.sh | tail -1)
tmp=$(mktemp -d /tmp/gllm-node.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
echo '{ "name": "gllm-node-consumer", "private": true, "type": "module" }' > package.json
npm install --no-audit --no-fund --silent "$tarball" webgpu@0.6.2
ln -s "$repo/models" models
cp "$repo/tests/node/run.mjs" .
node "$repo/tests/consumer/extract.mjs" --node node_modules/gllm-web/README.md examples
# SwiftShader, as the browser tests use (a set VK_DRIVER_FILES picks another driver).
swiftshader=/usr/lib/chromium/vk_swiftshader_icd.json
if [ -z "${VK_DRIVER_FILES-}" ] && [ -f "$swiftshader" ]; then export VK_DRIVER_FILES=$swiftshader; fi
node run.mjs "$repo" examples 2>&1 | grep -v XDG_RUNTIME_DIR
