#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian machine that has Rust (rustup)
# and Node/npm: apt packages, the wasm32 target, wasm-pack, wasm-bindgen-cli (pinned to
# Cargo.lock), npm tooling, and the model weights. Idempotent: present tools are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

# GPU without a GPU: Mesa lavapipe (native Vulkan); Chromium + SwiftShader (WebGPU).
need=()
dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || need+=(mesa-vulkan-drivers)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

rustup target add wasm32-unknown-unknown >/dev/null 2>&1
# Their prebuilt-binary downloads do not work here, so both build from crates.io.
WB=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
if ! command -v wasm-pack >/dev/null; then
  echo "setup: cargo install wasm-pack 0.15.1 (a few minutes)"
  cargo install wasm-pack --version 0.15.1 --locked -q
fi
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WB" ]; then
  echo "setup: cargo install wasm-bindgen-cli $WB (a few minutes)"
  cargo install wasm-bindgen-cli --version "$WB" -q
fi

# playwright-core drives Debian's Chromium for the demo (no browser download).
[ -d node_modules/playwright-core ] || npm install --no-audit --no-fund --silent

bash scripts/fetch-models.sh models
