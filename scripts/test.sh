#!/usr/bin/env bash
# The test command. Every GPU test runs twice: natively through wgpu on Vulkan (lavapipe
# on CI) and in headless Chromium through WebGPU (SwiftShader on CI); the npm package runs
# in Node on Dawn too (the `webgpu` package, SwiftShader on CI).
# Runs scripts/setup.sh first (idempotent), so it works on a fresh machine with Rust and Node.
# Optional: GLLM_CHECK_TARGETS=1 adds `cargo check` for an Apple and a Windows target
# (scripts/check-targets.sh: wgpu's Metal and DX12 backends compile).
# Optional: GLLM_EXPECT_NATIVE_ADAPTER / GLLM_EXPECT_WEB_ADAPTER make the adapter test fail
# unless the adapter description contains that text (.ci/run sets llvmpipe / swiftshader).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
# Browser test targets (each file under tests/ that uses the gpu_tests! harness).
WEB_TESTS=(--test kernels --test embed --test rerank --test search --test quant --test stream --test gguf_web --test decoder --test decoder_retrieval --test generate --test load)
PORT=${GLLM_TEST_PORT:-8777}

bash scripts/setup.sh

echo "== parity of gllm embed with an independent numpy reference, on new sentences =="
[ -x target/pyenv/bin/python ] || python3 -m venv target/pyenv
target/pyenv/bin/python -c "import numpy, tokenizers" 2>/dev/null || target/pyenv/bin/pip install -q numpy tokenizers
cargo build -q --bin gllm
target/pyenv/bin/python scripts/check_embed.py target/debug/gllm models/all-MiniLM-L6-v2 2>&1 | grep -v XDG_RUNTIME_DIR

echo "== GGUF reader: 15 s of the mutation fuzzer (examples/fuzz_gguf.rs; a panic fails) =="
cargo run -q --example fuzz_gguf -- 15 1
echo "== safetensors headers, tokenizer.json, config.json, chat templates: 5 s each (examples/fuzz_inputs.rs) =="
for target in safetensors tokenizer config chat; do cargo run -q --example fuzz_inputs -- "$target" 5 1; done

echo "== native: cargo test (wgpu on Vulkan) =="
GLLM_EXPECT_ADAPTER="${GLLM_EXPECT_NATIVE_ADAPTER-}" cargo test -- --nocapture 2>&1 | grep -v XDG_RUNTIME_DIR
cargo check --benches -q
if [ "${GLLM_CHECK_TARGETS-}" = 1 ]; then
  # Opt-in (a few minutes cold on 2 cores, seconds warm): Metal and DX12 compile.
  bash scripts/check-targets.sh
fi

echo "== browser: wasm-pack test in headless Chromium (WebGPU) =="
# A pre-quantized model for the browser's streaming test (tests/quant.rs).
target/debug/gllm quantize --model models/all-MiniLM-L6-v2 --dtype q4_0 --out models/all-MiniLM-L6-v2-q4_0
source scripts/serve.sh
serve models "$PORT"
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-1800}
GLLM_MODEL_URL="http://127.0.0.1:$PORT" GLLM_EXPECT_ADAPTER="${GLLM_EXPECT_WEB_ADAPTER-}" \
    wasm-pack test --headless --chrome --chromedriver "$(command -v chromedriver)" "${WEB_TESTS[@]}" -- --nocapture

echo "== demo: semantic search page in headless Chromium (Playwright), queries with known answers =="
bash scripts/pack.sh   # wasm-pack build --target web --release, then the npm package (www/ uses it)
DEMO_PORT=$((PORT + 1))
serve . "$DEMO_PORT"
mkdir -p target
node scripts/demo.mjs "http://127.0.0.1:$DEMO_PORT/www/?nocache=1&reranker=http://127.0.0.1:$DEMO_PORT/models/reranker-synthetic-minilm" \
    --test --screenshot target/demo.png
# The same page with WebGPU off: search on the CPU backend, a clear error from the chat panel.
node scripts/demo.mjs "http://127.0.0.1:$DEMO_PORT/www/?nocache=1&reranker=http://127.0.0.1:$DEMO_PORT/models/reranker-synthetic-minilm" \
    --test --no-webgpu
# Opt-in (the model is 1.2 GB: GLLM_FETCH_GEMMA=1 bash scripts/fetch-models.sh models): the
# same page with EmbeddingGemma, queries in six other languages finding English passages.
if [ "${GLLM_DEMO_MULTILINGUAL:-}" = 1 ]; then
  node scripts/demo.mjs "http://127.0.0.1:$DEMO_PORT/www/?nocache=1&model=http://127.0.0.1:$DEMO_PORT/models/embeddinggemma-300m" \
      --test --multilingual
fi

echo "== npm package: JS API in headless Chromium (concurrency, dispose, device loss, no WebGPU, worker mode) =="
node tests/js/run.mjs "http://127.0.0.1:$DEMO_PORT"

echo "== node: the packed package through gllm-web/node on Dawn (the webgpu package) over SwiftShader =="
GLLM_SKIP_WASM_BUILD=1 bash scripts/node-test.sh

echo "== consumer: npm install the packed tarball + Vite in a temp dir, the package README's examples in headless Chromium =="
GLLM_SKIP_WASM_BUILD=1 GLLM_CONSUMER_PORT=$((PORT + 2)) bash scripts/consumer-test.sh
