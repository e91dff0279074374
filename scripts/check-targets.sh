#!/usr/bin/env bash
# The native backends beyond Vulkan, compiled but not run (there is no Apple or Windows GPU
# here): `cargo check --lib` for x86_64-apple-darwin (wgpu's Metal backend) and
# x86_64-pc-windows-msvc (DX12, and Vulkan). Neither needs the platform's SDK or linker:
# check mode does not link and no dependency compiles C for the target. rustup adds the two
# standard libraries.
#   bash scripts/check-targets.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
for t in x86_64-apple-darwin x86_64-pc-windows-msvc; do
  rustup target add "$t" >/dev/null 2>&1
  echo "== cargo check --lib --target $t =="
  cargo check -q --lib --target "$t"
done
