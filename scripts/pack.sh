#!/usr/bin/env bash
# Builds the npm package: wasm-pack's output (pkg/, --target web) wrapped by npm/ (the ES
# module entry with auto-init, the worker mode, .d.ts over the generated one, the package README),
# assembled in target/npm/package/ and packed with `npm pack` to target/npm/gllm-web-VERSION.tgz.
#   bash scripts/pack.sh            (GLLM_SKIP_WASM_BUILD=1 reuses an existing pkg/)
# Prints the tarball's path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
if [ "${GLLM_SKIP_WASM_BUILD-}" != 1 ] || [ ! -f pkg/gllm_web_bg.wasm ]; then
  wasm-pack build --target web --release --out-name gllm_web 2>&1 | grep -E "pkg is ready|rror" || true
fi
test -f pkg/gllm_web_bg.wasm
out=target/npm
rm -rf "$out/package" && mkdir -p "$out/package/wasm"
cp npm/package.json npm/README.md npm/index.js npm/index.d.ts npm/factories.js npm/worker.js npm/worker.d.ts npm/engine-worker.js npm/node.js npm/node.d.ts "$out/package/"
cp pkg/gllm_web.js pkg/gllm_web.d.ts pkg/gllm_web_bg.wasm pkg/gllm_web_bg.wasm.d.ts "$out/package/wasm/"
# The version is the crate's.
version=$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)
node -e 'const f=process.argv[1],p=JSON.parse(require("fs").readFileSync(f));p.version=process.argv[2];require("fs").writeFileSync(f,JSON.stringify(p,null,2)+"\n")' "$out/package/package.json" "$version"
(cd "$out/package" && npm pack --silent --pack-destination .. >/dev/null)
echo "$(cd "$out" && pwd)/gllm-web-$version.tgz"
