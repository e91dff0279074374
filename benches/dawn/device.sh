#!/usr/bin/env bash
# One device call (the H100 machine, ../shared/gpu-recipe.md): the native benches and the
# Dawn runner on the very same random-weight models, so each row has native wgpu (Vulkan)
# and Dawn (Chrome's WebGPU engine in Node) side by side. Carried (built on the CPU machine):
#   .gl/*.deb                           the Vulkan loader and GL libraries the CUDA image lacks
#   target/dev-bundle/node.xz           the node binary (xz)
#   target/dev-bundle/webgpu.tar.xz     the `webgpu` npm package, linux-x64 only (dawn.node)
#   target/dev-bundle/gllm-web.tgz      scripts/pack.sh's tarball
#   target/dev-bundle/bench-*.xz        stripped `cargo bench --no-run` binaries (embed, generate, search)
#   target/dev-bundle/models.tar.xz     configs and tokenizers (MiniLM, SmolLM2, Qwen2.5-Coder 0.5B / 1.5B)
# Run there: bash benches/dawn/device.sh   (GLLM_DEVICE_MODELS: the decoders, default all three;
# GLLM_DEVICE_PARTS: any of "embed search generate dawn", default all).
set -euo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
B=$(pwd)/target/dev-bundle
W=/tmp/gllm-device
rm -rf "$W" && mkdir -p "$W/bin" "$W/app/node_modules" "$W/rand"
xz -dc "$B/node.xz" > "$W/bin/node" && chmod +x "$W/bin/node"
export PATH="$W/bin:$PATH"
tar xJf "$B/webgpu.tar.xz" -C "$W/app/node_modules" && mv "$W/app/node_modules/package" "$W/app/node_modules/webgpu"
tar xzf "$B/gllm-web.tgz" -C "$W/app/node_modules" && mv "$W/app/node_modules/package" "$W/app/node_modules/gllm-web"
mkdir -p "$W/models" && tar xJf "$B/models.tar.xz" -C "$W/models"
for b in embed generate search; do xz -dc "$B/bench-$b.xz" > "$W/bin/bench-$b" && chmod +x "$W/bin/bench-$b"; done
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
export GLLM_BENCH_WRITE="$W/rand"
M="$W/models"
MODELS=${GLLM_DEVICE_MODELS:-smollm2-135m-instruct qwen2.5-coder-0.5b-instruct qwen2.5-coder-1.5b-instruct}
PARTS=${GLLM_DEVICE_PARTS:-embed search generate dawn}
DTYPES=${GLLM_GEN_DTYPES:-f32,f16,q4_0}
part() { [[ " $PARTS " == *" $1 "* ]]; }
if part embed; then
  echo "== native: embed =="
  GLLM_BENCH_MODEL="$M/all-MiniLM-L6-v2" bench-embed 2>&1 | grep -v XDG_RUNTIME
fi
if part search; then
  echo "== native: search =="
  GLLM_BENCH_MODEL="$M/all-MiniLM-L6-v2" bench-search 2>&1 | grep -v XDG_RUNTIME
fi
dirs=(); for m in $MODELS; do dirs+=("$M/$m"); done
if part generate; then
  echo "== native: generate =="
  GLLM_GEN_DTYPES=$DTYPES bench-generate "${dirs[@]}" 2>&1 | grep -v XDG_RUNTIME
fi
if part dawn; then
  echo "== Dawn (Node, the webgpu package) on the same models =="
  cp benches/dawn/run.mjs "$W/app/"
  (cd "$W/app" && node run.mjs "$W/rand" --dtypes "$DTYPES" --decode-models "$(echo $MODELS | tr ' ' ,)")
fi
